r"""Baselines (part 2): FREEDOM, BM3 and LGMRec against dense float64 references and hand-computed
values."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from stair_pyg.models.bm3 import BM3
from stair_pyg.models.freedom import (FREEDOM, degree_sensitive_prune, knn_item_graph,
                                      modality_weights)
from stair_pyg.models.lgmrec import LGMRec, hyper_contrastive_loss, hypergraph_propagate

from test_baselines import batch, dense_bpr, dense_emb_loss, dense_norm_adj, random_graph

U, I = 30, 20


def dense_layer_mean(adj, x, layers):
    out, h = x, x
    for _ in range(layers):
        h = adj @ h
        out = out + h
    return out / (layers + 1)


# --------------------------------------------------------------------------- FREEDOM

def test_modality_weights_generalise_mm_image_weight():
    assert modality_weights(["text", "image"], 0.1) == {"text": 0.9, "image": 0.1}
    assert modality_weights(["text"], 0.1) == {"text": 1.0}
    assert modality_weights(["image"], 0.1) == {"image": 1.0}
    w = modality_weights(["image", "text", "genre"], 0.2)
    assert w["image"] == 0.2 and w["text"] == pytest.approx(0.4) == w["genre"]
    assert modality_weights(["text", "genre"], 0.1) == {"text": 0.5, "genre": 0.5}


def test_knn_item_graph_matches_dense_topk():
    gen = torch.Generator().manual_seed(4)
    feats = {"text": torch.randn(I, 9, generator=gen), "image": torch.randn(I, 5, generator=gen)}
    weights = {"text": 0.9, "image": 0.1}
    graph = knn_item_graph(feats, 4, weights).to_dense().double()
    expected = torch.zeros(I, I, dtype=torch.float64)
    for name, x in feats.items():
        x = x.double()
        sim = (x / x.norm(dim=1, keepdim=True)) @ (x / x.norm(dim=1, keepdim=True)).t()
        top = sim.topk(4, dim=1).indices  # the item itself included, as MMRec
        a = torch.zeros(I, I, dtype=torch.float64).scatter_(1, top, 1.0)
        expected += weights[name] * a / 4.0  # D^-1/2 A D^-1/2 with row sums k
    assert torch.allclose(graph, expected, atol=1e-7)
    assert torch.allclose(graph.sum(1), torch.ones(I, dtype=torch.float64), atol=1e-6)
    assert (graph.diagonal() > 0).all()


def test_degree_sensitive_pruning_keeps_expected_edges():
    _, edges = random_graph()
    # reference weights from a dense interaction matrix
    r = torch.zeros(U, I, dtype=torch.float64)
    r[edges[0], edges[1]] = 1.0
    weight = (r.sum(1)[edges[0]] * r.sum(0)[edges[1]]).rsqrt().float()
    num_keep = int(edges.size(1) * (1 - 0.8))
    torch.manual_seed(7)
    expected = edges[:, torch.multinomial(weight, num_keep, replacement=False)]
    torch.manual_seed(7)
    kept = degree_sensitive_prune(edges, U, I, 0.8)
    assert torch.equal(kept, expected)
    assert kept.size(1) == num_keep and torch.unique(kept, dim=1).size(1) == num_keep


def test_degree_sensitive_pruning_probabilities_by_hand():
    # user 0 buys items 0..3, users 1..3 buy item 0: edge (0, 0) joins two degree-4 nodes
    # (weight 1/4), the six others a degree-4 and a degree-1 node (weight 1/2).
    edges = torch.tensor([[0, 0, 0, 0, 1, 2, 3], [0, 1, 2, 3, 0, 0, 0]])
    gen = torch.Generator().manual_seed(0)
    draws = 13000
    hits = 0
    for _ in range(draws):
        kept = degree_sensitive_prune(edges, 4, 4, dropout=0.85, generator=gen)
        assert kept.size(1) == 1  # floor(7 * 0.15)
        hits += int(kept[0, 0] == 0 and kept[1, 0] == 0)
    # P = (1/4) / (1/4 + 6/2) = 1/13: expect 1000, standard deviation about 30
    assert abs(hits - 1000) < 150, hits
    with pytest.raises(ValueError, match="dropout"):
        degree_sensitive_prune(edges, 4, 4, dropout=1.0)


def test_freedom_pre_epoch_resamples_and_forward_matches_dense():
    data, edges = random_graph()
    model = FREEDOM.from_data(data, embedding_dim=6, knn_k=3, dropout=0.5, n_mm_layers=2,
                              n_ui_layers=2, reg_weight=0.7).double()
    torch.manual_seed(11)
    model.pre_epoch(0)
    torch.manual_seed(11)
    kept = degree_sensitive_prune(edges, U, I, 0.5)
    masked = dense_norm_adj(kept, U, I)
    assert torch.allclose(model.masked_adj.get().to_dense(), masked, atol=1e-7)
    model.pre_epoch(1)
    assert not torch.allclose(model.masked_adj.get().to_dense(), masked)  # re-sampled

    item_graph = knn_item_graph({m: data["item"][m + "_feat"] for m in ("text", "image")}, 3,
                                modality_weights(["text", "image"], 0.1)).to_dense().double()
    e_u, e_i = model.user_embedding.detach(), model.item_id_embedding.detach()
    h = item_graph @ (item_graph @ e_i)

    def reference(adj):
        out = dense_layer_mean(adj, torch.cat([e_u, e_i]), 2)
        return out[:U], out[U:] + h

    # evaluation uses the full graph, whatever was sampled for training
    user, item = model.get_embedding()
    ref_user, ref_item = reference(dense_norm_adj(edges, U, I))
    assert torch.allclose(user, ref_user, atol=1e-7) and torch.allclose(item, ref_item, atol=1e-7)

    # the training loss uses this epoch's pruned graph, plus the modality alignment terms
    users, pos, neg = batch(edges, I)
    ref_user, ref_item = reference(model.masked_adj.get().to_dense())
    u = ref_user[users]
    expected = dense_bpr((u * ref_item[pos]).sum(1), (u * ref_item[neg]).sum(1))
    for m in ("text", "image"):
        proj = model.projections[m]
        f = data["item"][m + "_feat"].double()
        p = f[pos] @ proj.weight.detach().t() + proj.bias.detach()
        n = f[neg] @ proj.weight.detach().t() + proj.bias.detach()
        expected = expected + 0.7 * dense_bpr((u * p).sum(1), (u * n).sum(1))
    assert torch.allclose(model.recommendation_loss(users, pos, neg), expected, atol=1e-7)


def test_freedom_features_trainable_or_frozen():
    data, edges = random_graph()
    users, pos, neg = batch(edges, I)
    for train in (True, False):
        model = FREEDOM.from_data(data, embedding_dim=4, knn_k=3, train_features=train)
        model.recommendation_loss(users, pos, neg).backward()
        assert (model.features["text"].grad is not None) == train
    with pytest.raises(ValueError, match="dropout"):
        FREEDOM.from_data(data, dropout=1.0)


# --------------------------------------------------------------------------- BM3

def test_bm3_loss_by_hand_without_dropout():
    data, edges = random_graph()
    model = BM3.from_data(data, embedding_dim=5, num_layers=2, dropout=0.0, reg_weight=0.3,
                          cl_weight=1.5).double()
    users, pos, neg = batch(edges, I)
    adj = dense_norm_adj(edges, U, I)
    e_u, e_i = model.user_embedding.detach(), model.item_id_embedding.detach()
    out = dense_layer_mean(adj, torch.cat([e_u, e_i]), 2)
    user_all, item_all = out[:U], out[U:] + e_i
    w, b = model.predictor.weight.detach(), model.predictor.bias.detach()

    def g(x):
        return x @ w.t() + b

    def c(a, t):
        return 1 - F.cosine_similarity(a, t, dim=1).mean()

    u, i = user_all[users], item_all[pos]
    expected = c(g(u), i) + c(g(i), u)
    for m in ("text", "image"):
        proj = model.projections[m]
        f = data["item"][m + "_feat"].double()[pos] @ proj.weight.detach().t() + proj.bias.detach()
        expected = expected + 1.5 * (c(g(f), i) + c(g(f), f))
    expected = expected + 0.3 * (user_all.norm() + item_all.norm()) / I
    loss = model.recommendation_loss(users, pos, neg)
    assert torch.allclose(loss, expected, atol=1e-7)
    # no negative sampling
    assert torch.allclose(model.recommendation_loss(users, pos, torch.zeros_like(neg)), loss,
                          atol=1e-12)
    user, item = model.get_embedding()
    assert torch.allclose(user, g(user_all), atol=1e-7) and torch.allclose(item, g(item_all),
                                                                           atol=1e-7)


def test_bm3_target_dropout_is_stochastic_and_gradient_free():
    data, edges = random_graph()
    model = BM3.from_data(data, embedding_dim=5, dropout=0.5)
    users, pos, neg = batch(edges, I)
    torch.manual_seed(0)
    a = model.recommendation_loss(users, pos, neg)
    torch.manual_seed(1)
    b = model.recommendation_loss(users, pos, neg)
    assert not torch.allclose(a, b)
    torch.manual_seed(0)
    assert torch.allclose(model.recommendation_loss(users, pos, neg), a)


def test_bm3_repeats_in_a_batch_share_their_target_mask():
    # As MMRec (one mask per batch over the whole table): a pair repeated in a batch is one
    # draw, so its loss is the single pair's under the same seed.
    data, edges = random_graph()
    model = BM3.from_data(data, embedding_dim=5, dropout=0.5)
    u, i = edges[0, :1], edges[1, :1]
    torch.manual_seed(3)
    once = model.recommendation_loss(u, i, i)
    torch.manual_seed(3)
    twice = model.recommendation_loss(u.repeat(3), i.repeat(3), i.repeat(3))
    assert torch.allclose(once, twice, atol=1e-6)


# --------------------------------------------------------------------------- LGMRec

def test_hypergraph_propagation_closed_form():
    gen = torch.Generator().manual_seed(2)
    hi = torch.rand(I, 4, generator=gen, dtype=torch.float64)
    hu = torch.rand(U, 4, generator=gen, dtype=torch.float64)
    e = torch.randn(I, 3, generator=gen, dtype=torch.float64)
    u1, i1 = hypergraph_propagate(hi, hu, e, 1)
    assert torch.allclose(i1, hi @ hi.t() @ e) and torch.allclose(u1, hu @ hi.t() @ e)
    u2, i2 = hypergraph_propagate(hi, hu, e, 2)
    assert torch.allclose(i2, (hi @ hi.t()) @ (hi @ hi.t()) @ e)
    assert torch.allclose(u2, hu @ hi.t() @ (hi @ hi.t()) @ e)
    with pytest.raises(ValueError, match="at least one layer"):
        hypergraph_propagate(hi, hu, e, 0)


def test_hyper_contrastive_loss_is_infonce():
    gen = torch.Generator().manual_seed(3)
    a, p = torch.randn(5, 4, generator=gen, dtype=torch.float64), torch.randn(5, 4, generator=gen,
                                                                           dtype=torch.float64)
    c = torch.randn(9, 4, generator=gen, dtype=torch.float64)
    cos = lambda x, y: (x @ y.t()) / (x.norm(dim=1)[:, None] * y.norm(dim=1)[None, :])  # noqa
    expected = -torch.log(torch.exp(cos(a, p).diagonal() / 0.2)
                          / torch.exp(cos(a, c) / 0.2).sum(1)).sum()
    assert torch.allclose(hyper_contrastive_loss(a, p, c, 0.2), expected)


def test_lgmrec_forward_and_loss_match_dense(monkeypatch):
    # replace the Gumbel noise by its noise-free limit so that a dense reference can follow
    monkeypatch.setattr(F, "gumbel_softmax",
                        lambda logits, tau, dim, hard: torch.softmax(logits / tau, dim=dim))
    data, edges = random_graph()
    model = LGMRec.from_data(data, embedding_dim=6, n_ui_layers=2, n_mm_layers=2,
                             n_hyper_layer=2, hyper_num=3, alpha=0.4, cl_weight=0.01,
                             reg_weight=0.05).double().eval()
    adj = dense_norm_adj(edges, U, I)
    r = torch.zeros(U, I, dtype=torch.float64)
    r[edges[0], edges[1]] = 1.0
    e_u, e_i = model.user_embedding.detach(), model.item_id_embedding.detach()
    collab = dense_layer_mean(adj, torch.cat([e_u, e_i]), 2)
    local, glob, hyper = collab.clone(), 0, {}
    for m in ("text", "image"):
        f = data["item"][m + "_feat"].double()
        items = f @ model.transforms[m].detach()
        mm = torch.cat([(r @ items) / r.sum(1, keepdim=True), items])
        mm = adj @ (adj @ mm)
        local = local + mm / mm.norm(dim=1, keepdim=True)
        logits = f @ model.hyperedges[m].detach()
        hi, hu = torch.softmax(logits / 0.2, 1), torch.softmax(r @ logits / 0.2, 1)
        lat = hi.t() @ collab[U:]
        lat = hi.t() @ (hi @ lat)
        hyper[m] = (hu @ lat, hi @ lat)
        glob = glob + torch.cat(hyper[m])
    expected = local + 0.4 * glob / glob.norm(dim=1, keepdim=True)
    user, item = model.get_embedding()
    assert torch.allclose(torch.cat([user, item]), expected, atol=1e-7)

    users, pos, neg = batch(edges, I)
    ue, ie = expected[:U], expected[U:]
    u = ue[users]
    ref = dense_bpr((u * ie[pos]).sum(1), (u * ie[neg]).sum(1))
    (ut, it), (uv, iv) = hyper["text"], hyper["image"]
    ref = ref + 0.01 * (hyper_contrastive_loss(ut[users], uv[users], uv, 0.2)
                        + hyper_contrastive_loss(it[pos], iv[pos], iv, 0.2))
    ref = ref + 0.05 * dense_emb_loss(u, ie[pos], ie[neg])
    assert torch.allclose(model.recommendation_loss(users, pos, neg), ref, atol=1e-7)


def test_lgmrec_one_modality_has_no_contrastive_term():
    data, edges = random_graph()
    users, pos, neg = batch(edges, I)
    losses = []
    for cl_weight in (0.0, 100.0):
        torch.manual_seed(0)
        model = LGMRec.from_data(data, modalities=["text"], embedding_dim=6, cl_weight=cl_weight)
        torch.manual_seed(1)
        losses.append(model.recommendation_loss(users, pos, neg))
    assert torch.allclose(losses[0], losses[1])
    torch.manual_seed(0)
    two = LGMRec.from_data(data, embedding_dim=6, cl_weight=100.0)
    torch.manual_seed(1)
    assert two.recommendation_loss(users, pos, neg) > losses[0] + 1.0
