"""Every DAG on d <= 5 nodes, and the exact posterior over them: the enumeration lives with the DAG
environment (gfncore.envs.dag_enumerate), which needs it; this is its documented home in causal."""
from ..envs.dag_enumerate import (MAX_ENUMERATED_NODES, DAGPosterior, ExactPosterior, all_dags,  # noqa: F401
                                  count_dags, dag_posterior, exact_posterior, graph_keys, is_dag)
