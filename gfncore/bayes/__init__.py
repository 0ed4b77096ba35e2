"""Bayesian posteriors over discrete parameters: the reward R(θ) = P(θ) P(D|θ) of a GFlowNet that
builds θ one coordinate at a time, its unbiased minibatch estimate, the exact posterior and
evidence by enumeration on small grids, and posterior-predictive evaluation from weighted or
sampled θ's."""
from .exact import ExactPosterior, exact_posterior, exact_posterior_of
from .models import (MODELS, BayesProblem, GridGaussianPrior, LinearRegression, LogisticRegression, ParameterGrid,
                     synthetic_problem)
from .predictive import evaluate_predictive, posterior_predictive
from .reward import MinibatchLogReward

__all__ = ["ParameterGrid", "GridGaussianPrior", "LinearRegression", "LogisticRegression", "MODELS", "BayesProblem",
           "synthetic_problem", "MinibatchLogReward", "ExactPosterior", "exact_posterior", "exact_posterior_of",
           "posterior_predictive", "evaluate_predictive"]
