r"""Full-ranking evaluation (MMRec / RecBole protocol) and top-:math:`K` metrics."""
from stair_pyg.eval.evaluator import (
    COLD_PREFIX,
    block_size,
    evaluate,
    evaluate_embeddings,
    recommend_topk,
)
from stair_pyg.eval.metrics import (
    METRICS,
    hit_rate_at_k,
    metric_sums,
    mrr_at_k,
    ndcg_at_k,
    parse_metric,
    precision_at_k,
    ranking_metrics,
    recall_at_k,
)

__all__ = [
    "COLD_PREFIX", "block_size", "evaluate", "evaluate_embeddings",
    "recommend_topk", "METRICS", "hit_rate_at_k", "metric_sums", "mrr_at_k", "ndcg_at_k",
    "parse_metric", "precision_at_k", "ranking_metrics", "recall_at_k",
]
