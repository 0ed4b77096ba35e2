"""Bayesian posteriors over discrete parameters: the reward R(θ) = P(θ) P(D|θ) of a GFlowNet that
builds θ one coordinate at a time, its unbiased minibatch estimate (with first- or second-order
control variates), the GFlowNet posterior sampler and its evidence estimate, a posterior sampler
amortized over data sets, the joint predictive posterior Q(Y, θ | X) whose outcome steps are the
posterior predictive (gfncore.bayes.joint), the exact posterior and evidence by enumeration on
small grids, and posterior-predictive evaluation from weighted or sampled θ's. `gfncore bayes` is
the command line (gfncore.bayes.cli)."""
from .amortized import AmortizedConfig, AmortizedPosterior, DatasetPosteriorEnv, held_out_datasets, prior_datasets
from .exact import ExactPosterior, GridPosterior, exact_posterior, exact_posterior_of, grid_posterior
from .joint import JointConfig, JointPredictive, OutcomeGrid
from .models import (MODELS, BayesProblem, GridGaussianPrior, LinearRegression, LogisticRegression, ParameterGrid,
                     synthetic_problem)
from .posterior import PosteriorConfig, PosteriorSampler
from .predictive import evaluate_predictive, posterior_predictive
from .reward import MinibatchLogReward, fit_reference

__all__ = ["ParameterGrid", "GridGaussianPrior", "LinearRegression", "LogisticRegression", "MODELS", "BayesProblem",
           "synthetic_problem", "MinibatchLogReward", "fit_reference", "GridPosterior", "grid_posterior",
           "exact_posterior_of", "posterior_predictive", "evaluate_predictive", "PosteriorConfig", "PosteriorSampler",
           "AmortizedConfig", "AmortizedPosterior", "DatasetPosteriorEnv", "prior_datasets", "held_out_datasets",
           "JointConfig", "JointPredictive", "OutcomeGrid",
           "ExactPosterior", "exact_posterior"]  # the names before issue 16, kept for existing code
