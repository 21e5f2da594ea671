r"""Baselines (part 1): shared pieces, LightGCN, VBPR, the content-only model, and a training smoke
test of every baseline. Every equation is checked against an independent dense float64 reference."""
from __future__ import annotations

import copy

import pytest
import torch

from stair_pyg.data.hetero import build_hetero_data
from stair_pyg.models._common import embedding_norm_loss, layer_mean
from stair_pyg.nn.sparse import SparseAdjBuffer
from stair_pyg.models.bm3 import BM3
from stair_pyg.models.content import ContentBPR
from stair_pyg.models.freedom import FREEDOM
from stair_pyg.models.lgmrec import LGMRec
from stair_pyg.models.lightgcn import LightGCN
from stair_pyg.models.vbpr import VBPR
from stair_pyg.nn.sparse import user_item_adjacency

BASELINES = [LightGCN, VBPR, ContentBPR, FREEDOM, BM3, LGMRec]


def random_graph(num_users=30, num_items=20, num_edges=150, seed=0, features=None):
    gen = torch.Generator().manual_seed(seed)
    edges = torch.stack([torch.randint(0, num_users, (num_edges,), generator=gen),
                         torch.randint(0, num_items, (num_edges,), generator=gen)])
    edges = torch.unique(edges, dim=1)
    # every user and item gets at least one interaction
    extra = torch.stack([torch.arange(num_users) % num_users,
                         torch.arange(num_users) % num_items])
    edges = torch.unique(torch.cat([edges, extra], dim=1), dim=1)
    if features is None:
        features = {"text": torch.randn(num_items, 12, generator=gen),
                    "image": torch.randn(num_items, 7, generator=gen)}
    return build_hetero_data(num_users, num_items, edges, features), edges


def dense_norm_adj(edges, num_users, num_items):
    n = num_users + num_items
    a = torch.zeros(n, n, dtype=torch.float64)
    a[edges[0], edges[1] + num_users] = 1.0
    a[edges[1] + num_users, edges[0]] = 1.0
    deg = a.sum(1)
    inv = torch.where(deg > 0, deg.pow(-0.5), torch.zeros_like(deg))
    return inv[:, None] * a * inv[None, :]


def dense_bpr(pos, neg):
    return -torch.log(torch.sigmoid(pos - neg)).mean()


def dense_emb_loss(*embs):
    return sum(torch.sqrt((e ** 2).sum()) for e in embs) / embs[-1].shape[0]


def all_scores(model, users):
    r"""predict_link over every item for each user, as a [len(users), I] matrix."""
    items = torch.arange(model.num_items)
    pairs_users = users.repeat_interleave(items.numel())
    return model.predict_link(pairs_users, items.repeat(users.numel())).view(users.numel(), -1)


def batch(edges, num_items, size=16, seed=1):
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, edges.size(1), (size,), generator=gen)
    return edges[0, idx], edges[1, idx], torch.randint(0, num_items, (size,), generator=gen)


# --------------------------------------------------------------------------- shared pieces

def test_sparse_buffer_moves_copies_and_stays_out_of_state_dict():
    _, edges = random_graph()
    adj = user_item_adjacency(edges, 30, 20)
    holder = torch.nn.Module()
    holder.adj = SparseAdjBuffer(adj)
    assert holder.state_dict() == {}
    clone = copy.deepcopy(holder)  # CSR tensors cannot be deep-copied: the buffers are dense
    assert torch.equal(clone.adj.get().to_dense(), adj.to_dense())
    holder.double()
    assert holder.adj.get().adj.dtype == torch.float64
    assert torch.allclose(holder.adj.get().to_dense(), dense_norm_adj(edges, 30, 20))


def test_layer_mean_matches_dense_powers():
    _, edges = random_graph()
    adj = user_item_adjacency(edges, 30, 20)
    x = torch.randn(50, 5)
    dense = dense_norm_adj(edges, 30, 20)
    xd = x.double()
    expected = (xd + dense @ xd + dense @ dense @ xd + dense @ dense @ dense @ xd) / 4
    assert torch.allclose(layer_mean(adj, x, 3).double(), expected, atol=1e-5)
    assert torch.equal(layer_mean(adj, x, 0), x)


def test_embedding_norm_loss_is_mmrec_emb_loss():
    a, b = torch.randn(4, 3), torch.randn(6, 3)
    expected = (a.double().norm() + b.double().norm()) / 6
    assert torch.allclose(embedding_norm_loss(a, b).double(), expected, atol=1e-6)


# --------------------------------------------------------------------------- LightGCN

def test_lightgcn_layer_mean_equals_dense_float64_and_pyg():
    data, edges = random_graph()
    model = LightGCN.from_data(data, embedding_dim=8, num_layers=3).double()
    user, item = model.get_embedding()
    dense = dense_norm_adj(edges, 30, 20)
    e0 = torch.cat([model.user_embedding.weight, model.item_embedding.weight]).detach()
    layers = [e0]
    for _ in range(3):
        layers.append(dense @ layers[-1])
    expected = torch.stack(layers).mean(0)
    # the adjacency is built in float32: agreement to float32 rounding
    assert torch.allclose(torch.cat([user, item]), expected, atol=1e-7)

    # PyG's own LightGCN (LGConv with gcn_norm, alpha = 1/(L+1)) on the same weights
    from torch_geometric.nn.models import LightGCN as PyGLightGCN
    edge_index = torch.cat([torch.stack([edges[0], edges[1] + 30]),
                            torch.stack([edges[1] + 30, edges[0]])], dim=1)
    pyg = PyGLightGCN(50, 8, num_layers=3).double()
    with torch.no_grad():
        pyg.embedding.weight.copy_(e0)
    assert torch.allclose(pyg.get_embedding(edge_index), expected, atol=1e-10)
    assert torch.allclose(torch.cat([user, item]), pyg.get_embedding(edge_index), atol=1e-7)


def test_lightgcn_loss_is_bpr_plus_layer0_norm():
    data, edges = random_graph()
    model = LightGCN.from_data(data, embedding_dim=8, num_layers=2, reg_weight=0.3).double()
    users, pos, neg = batch(edges, 20)
    user, item = model.get_embedding()
    u = user[users]
    expected = dense_bpr((u * item[pos]).sum(1), (u * item[neg]).sum(1)) + 0.3 * dense_emb_loss(
        model.user_embedding.weight[users], model.item_embedding.weight[pos],
        model.item_embedding.weight[neg])
    loss = model.recommendation_loss(users, pos, neg)
    assert torch.allclose(loss, expected, atol=1e-10)
    # The loss propagates only the batch's receptive field: same gradient as the full propagation.
    grad = torch.autograd.grad(loss, [model.user_embedding.weight, model.item_embedding.weight])
    grad_ref = torch.autograd.grad(expected, [model.user_embedding.weight,
                                              model.item_embedding.weight])
    for a, b in zip(grad, grad_ref):
        torch.testing.assert_close(a, b)


def test_lightgcn_tables_share_one_block_and_train_as_separate_tables_do():
    import copy

    data, edges = random_graph()
    model = LightGCN.from_data(data, embedding_dim=8, num_layers=2)
    users_w, items_w = model.user_embedding.weight, model.item_embedding.weight
    assert items_w.data_ptr() == users_w.data_ptr() + users_w.numel() * users_w.element_size()
    separate = copy.deepcopy(model)  # each parameter cloned into its own memory
    users, pos, neg = batch(edges, 20)
    for m in (model, separate):
        m.recommendation_loss(users, pos, neg).backward()
    for a, b in zip(model.parameters(), separate.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=0)


def test_lightgcn_rejects_bad_input():
    data, _ = random_graph()
    with pytest.raises(ValueError, match="num_layers"):
        LightGCN.from_data(data, num_layers=-1)


# --------------------------------------------------------------------------- VBPR

@pytest.mark.parametrize("use_bias", [False, True])
def test_vbpr_score_decomposition(use_bias):
    data, edges = random_graph()
    model = VBPR.from_data(data, embedding_dim=6, id_embedding_dim=4, use_bias=use_bias).double()
    if use_bias:
        with torch.no_grad():
            model.item_bias.normal_()
            model.feature_bias.weight.normal_()
    feats = torch.cat([data["item"].text_feat, data["item"].image_feat], dim=1).double()
    theta = model.user_embedding.detach()
    gamma_u, theta_u = theta[:, :4], theta[:, 4:]
    gamma_i = model.item_id_embedding.detach()
    visual = feats @ model.item_linear.weight.detach().t() + model.item_linear.bias.detach()
    expected = gamma_u @ gamma_i.t() + theta_u @ visual.t()
    if use_bias:
        expected = expected + (model.item_bias.detach()
                               + feats @ model.feature_bias.weight.detach()[0])[None, :]
    users = torch.arange(30)
    assert torch.allclose(all_scores(model, users), expected, atol=1e-10)
    user, item = model.get_embedding()
    assert user.shape == (30, 10 + use_bias) and item.shape == (20, 10 + use_bias)

    b_users, pos, neg = batch(edges, 20)
    pos_s, neg_s = expected[b_users, pos], expected[b_users, neg]
    item_vec = torch.cat([gamma_i, visual], dim=1)
    reg = dense_emb_loss(theta[b_users], item_vec[pos], item_vec[neg])
    assert torch.allclose(model.recommendation_loss(b_users, pos, neg),
                          dense_bpr(pos_s, neg_s) + 1e-3 * reg, atol=1e-10)


def test_vbpr_one_modality_and_selection():
    data, _ = random_graph()
    model = VBPR.from_data(data, embedding_dim=6, modalities=["text"])
    assert model.features.shape == (20, 12)
    assert model.hparams["modalities"] == ["text"]
    with pytest.raises(ValueError, match="not in the data"):
        VBPR.from_data(data, modalities=["audio"])
    bare = build_hetero_data(3, 2, torch.tensor([[0, 1], [1, 0]]))
    for cls in (VBPR, ContentBPR, FREEDOM, BM3, LGMRec):
        with pytest.raises(ValueError, match="modality features"):
            cls.from_data(bare)


def test_content_model_sees_items_through_features_only():
    features = {"genre": torch.randn(20, 5)}
    features["genre"][7] = features["genre"][3]  # two items with identical features
    data, _ = random_graph(features=features)
    model = ContentBPR.from_data(data, embedding_dim=8)
    assert model.item_id_embedding is None
    assert "id_embedding_dim" not in model.hparams
    user, item = model.get_embedding()
    assert user.shape == (30, 8) and item.shape == (20, 8)
    assert torch.equal(item[7], item[3])
    rebuilt = ContentBPR.from_data(data, **model.hparams)
    rebuilt.load_state_dict(model.state_dict())
    assert torch.equal(rebuilt.get_embedding()[1], item)


# --------------------------------------------------------------------------- every baseline

@pytest.mark.parametrize("cls", BASELINES, ids=lambda c: c.__name__)
@pytest.mark.parametrize("modalities", [["text"], ["text", "image"]], ids=["text", "text+image"])
def test_training_reduces_loss_and_shapes(cls, modalities):
    torch.manual_seed(0)
    data, edges = random_graph(num_users=40, num_items=25, num_edges=300)
    hparams = {} if cls is LightGCN else {"modalities": modalities}
    model = cls.from_data(data, embedding_dim=16, **hparams)
    optimizer = model.configure_optimizer(lr=0.01, weight_decay=0.0)
    users, pos, neg = batch(edges, 25, size=128, seed=3)

    def full_loss():
        torch.manual_seed(123)  # same dropout / Gumbel noise / pruning for both measurements
        model.pre_epoch(0)
        return model.recommendation_loss(users, pos, neg)

    model.train()
    before = full_loss().item()
    for epoch in range(40):
        model.pre_epoch(epoch)
        loss = model.recommendation_loss(users, pos, neg)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = full_loss().item()
    assert after < before, (before, after)

    model.eval()
    user, item = model.get_embedding()
    assert user.shape[0] == 40 and item.shape[0] == 25 and user.shape[1] == item.shape[1]
    assert torch.isfinite(user).all() and torch.isfinite(item).all()
    assert all_scores(model, torch.tensor([0, 5])).shape == (2, 25)
    # checkpoints: hparams + state_dict rebuild the model
    rebuilt = cls.from_data(data, **model.hparams)
    rebuilt.load_state_dict(model.state_dict())
    copy.deepcopy(model)
