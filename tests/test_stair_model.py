import copy

import pytest
import torch

from stair_pyg.data.hetero import build_hetero_data
from stair_pyg.models import get_model
from stair_pyg.models.stair import STAIR
from stair_pyg.nn import modality_graph, stepwise_beta, whiten
from stair_pyg.optim import StepwiseAdamW


def make_data(num_users=30, num_items=40, features=("text", "image"), seed=0, dims=None):
    gen = torch.Generator().manual_seed(seed)
    dims = dims or {"text": 24, "image": 48, "genre": 5}
    mask = torch.rand(num_users, num_items, generator=gen) < 0.12
    mask[0] = False  # user 0 has no training items
    users, items = mask.nonzero(as_tuple=True)
    feats = {m: torch.randn(num_items, dims[m], generator=gen) for m in features}
    return build_hetero_data(num_users, num_items, torch.stack([users, items]), feats)


def dense_fsc_reference(model):
    u, i = model.num_users, model.num_items
    n = u + i
    edges = model.train_edge_index
    a = torch.zeros(n, n, dtype=torch.float64)
    a[edges[0], edges[1] + u] = 1.0
    a[edges[1] + u, edges[0]] = 1.0
    deg = a.sum(1)
    dis = torch.where(deg > 0, deg.pow(-0.5), torch.zeros_like(deg))
    a = dis[:, None] * a * dis[None, :]
    x = torch.cat([model.user_embedding.weight, model.item_embedding.weight]).double()
    beta = stepwise_beta(model.embedding_dim, model.gamma, dtype=torch.float64)
    out, h = torch.zeros_like(x), x
    for _ in range(model.num_layers + 1):
        out, h = out + h, (a @ h) * beta
    out = out * (1 - beta) / (1 - beta.pow(model.num_layers + 1))
    return out[:u], out[u:]


def rel_err(a, b):
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("dim,num_layers,gamma", [(16, 3, 0.1), (8, 1, 0.5), (32, 2, 1.0)])
def test_from_data_initialisation_and_forward(dim, num_layers, gamma):
    data = make_data(seed=dim)
    model = STAIR.from_data(data, embedding_dim=dim, num_layers=num_layers, gamma=gamma)
    feats = {m: data["item"][f"{m}_feat"] for m in ("text", "image")}

    # MI, items: k-weighted average of the whitened modalities (text k=5, image k=1).
    items = (5 * whiten(feats["text"], dim).double() + whiten(feats["image"], dim).double()) / 6
    assert rel_err(model.item_embedding.weight, items) < 1e-5
    # MI, users: mean of their training items' initial embeddings (dense float64 reference).
    u, i = model.num_users, model.num_items
    r = torch.zeros(u, i, dtype=torch.float64)
    r[model.train_edge_index[0], model.train_edge_index[1]] = 1.0
    ref_users = (r / r.sum(1, keepdim=True).clamp_min(1)) @ items
    assert rel_err(model.user_embedding.weight, ref_users) < 1e-5
    assert torch.all(model.user_embedding.weight[0] == 0)  # no training items

    # The modality graph of BSC.
    ei, ew = modality_graph([feats["text"], feats["image"]], [5, 1])
    dense = torch.zeros(model.num_items, model.num_items)
    dense[ei[1], ei[0]] = ew
    torch.testing.assert_close(model.item_adj.get().to_dense(), dense)

    # FSC over the bipartite graph against a dense float64 reference.
    user_emb, item_emb = model.get_embedding()
    ref_u, ref_i = dense_fsc_reference(model)
    assert user_emb.shape == (u, dim) and item_emb.shape == (i, dim)
    assert rel_err(user_emb, ref_u) < 1e-5 and rel_err(item_emb, ref_i) < 1e-5

    # An explicit homogeneous edge_index gives the same result.
    e = model.train_edge_index
    homo = torch.cat([torch.stack([e[0], e[1] + u]), torch.stack([e[1] + u, e[0]])], dim=1)
    user2, item2 = model.get_embedding(homo)
    assert rel_err(user2, ref_u) < 1e-5 and rel_err(item2, ref_i) < 1e-5


def test_loss_is_bpr_and_differentiable():
    model = STAIR.from_data(make_data(), embedding_dim=8)
    users, pos, neg = torch.tensor([1, 2, 3]), torch.tensor([0, 5, 7]), torch.tensor([9, 1, 2])
    loss = model.recommendation_loss(users, pos, neg)
    user_emb, item_emb = model.get_embedding()
    s_pos = (user_emb[users] * item_emb[pos]).sum(-1)
    s_neg = (user_emb[users] * item_emb[neg]).sum(-1)
    expected = -torch.log(torch.sigmoid(s_pos - s_neg)).mean()
    assert torch.allclose(loss, expected, rtol=1e-5)
    loss.backward()
    assert model.item_embedding.weight.grad.abs().sum() > 0


def test_recommend_excludes_seen_items():
    model = STAIR.from_data(make_data(), embedding_dim=8)
    users = torch.tensor([3, 1, 7])
    top = model.recommend(users, k=5, exclude_edge_index=model.train_edge_index)
    # Users scored in blocks give the same lists.
    assert torch.equal(model.recommend(users, k=5, exclude_edge_index=model.train_edge_index,
                                       batch_size=2), top)
    user_emb, item_emb = model.get_embedding()
    scores = (user_emb[users] @ item_emb.t()).detach()
    e = model.train_edge_index
    for row, user in enumerate(users.tolist()):
        seen = set(e[1][e[0] == user].tolist())
        assert not seen & set(top[row].tolist())
        scores[row, list(seen)] = float("-inf")
    assert torch.equal(top, scores.topk(5, dim=1).indices)
    assert model.recommend(k=3).shape == (model.num_users, 3)
    assert torch.equal(model.recommend(users, k=5),
                       (user_emb[users] @ item_emb.t()).topk(5, dim=1).indices)
    with pytest.raises(ValueError):
        model.recommend(users, k=0)


def test_stepwise_optimizer_wiring_and_training():
    torch.manual_seed(0)
    model = STAIR.from_data(make_data(), embedding_dim=16, num_layers=2, gamma=0.2)
    opt = model.configure_optimizer(lr=0.01, weight_decay=0.1)
    assert isinstance(opt, StepwiseAdamW)
    users_group, items_group = opt.param_groups
    assert users_group["graph"] is None
    assert items_group["graph"] is model.item_adj
    assert torch.allclose(items_group["beta"], 1 - stepwise_beta(16, 0.2))
    assert items_group["num_layers"] == 2 and items_group["weight_decay"] == 0.1
    e = model.train_edge_index
    gen = torch.Generator().manual_seed(1)
    neg = torch.randint(0, model.num_items, (e.size(1),), generator=gen)
    first = model.recommendation_loss(e[0], e[1], neg).item()
    for _ in range(30):
        opt.zero_grad()
        model.recommendation_loss(e[0], e[1], neg).backward()
        opt.step()
    assert model.recommendation_loss(e[0], e[1], neg).item() < first


def test_without_modalities_random_init_and_plain_adamw():
    torch.manual_seed(0)
    model = STAIR.from_data(make_data(num_users=200, num_items=300, features=()),
                            embedding_dim=16)
    assert model.item_adj is None
    std = model.item_embedding.weight.detach().std().item()
    assert 0.8e-4 < std < 1.2e-4
    opt = model.configure_optimizer(lr=0.01)
    assert all(group["graph"] is None for group in opt.param_groups)
    users, items = model.get_embedding()
    assert torch.isfinite(users).all() and torch.isfinite(items).all()


def test_low_dimensional_modality_and_hparams_round_trip():
    data = make_data(features=("text", "genre"))  # genre: 5 dims < embedding_dim 16
    model = STAIR.from_data(data, embedding_dim=16, knn_k={"genre": 2})
    assert model.modality_k("genre") == 2 and model.modality_k("text") == 5
    assert model.modality_k("audio") == 1
    assert torch.isfinite(model.item_embedding.weight).all()
    rebuilt = get_model("stair").from_data(data, **model.hparams)
    assert rebuilt.hparams == model.hparams
    assert torch.equal(rebuilt.item_embedding.weight, model.item_embedding.weight)
    # Checkpoints hold the embeddings, the FSC beta buffer and MI's whitening transforms (for
    # add_items), never the graphs.
    state = model.state_dict()
    assert set(state) == {"user_embedding.weight", "item_embedding.weight", "conv.beta",
                          "mi_mean_text", "mi_projection_text", "mi_mean_genre",
                          "mi_projection_genre"}
    assert state["mi_projection_genre"].shape == (5, 16)
    rebuilt.load_state_dict(state)
    # an older checkpoint without the transforms still loads (they are recomputed from data)
    from stair_pyg.train.checkpoint import load_model_state

    old = {k: v for k, v in state.items() if not k.startswith("mi_")}
    load_model_state(rebuilt, old)
    assert torch.equal(rebuilt.mi_mean_text, model.mi_mean_text)
    clone = copy.deepcopy(model).double()
    assert clone.get_embedding()[0].dtype == torch.float64
    assert rel_err(clone.get_embedding()[1], model.get_embedding()[1]) < 1e-5


def test_batch_loss_gradient_equals_full_propagation_gradient():
    # The loss propagates only the batch's receptive field; its value and gradient must be those
    # of the loss on the fully propagated embeddings (float64).
    model = STAIR.from_data(make_data(num_users=50, num_items=60), embedding_dim=8).double()
    gen = torch.Generator().manual_seed(4)
    users = torch.randint(1, 50, (12,), generator=gen)
    pos = torch.randint(0, 60, (12,), generator=gen)
    neg = torch.randint(0, 60, (12,), generator=gen)
    loss = model.recommendation_loss(users, pos, neg)
    loss.backward()
    grads = [p.grad.clone() for p in (model.user_embedding.weight, model.item_embedding.weight)]
    model.zero_grad()
    full = model.recommendation_loss(users, pos, neg, embeddings=model.get_embedding())
    full.backward()
    torch.testing.assert_close(loss, full)
    torch.testing.assert_close(grads[0], model.user_embedding.weight.grad)
    torch.testing.assert_close(grads[1], model.item_embedding.weight.grad)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shared_tables_stack_without_a_copy_and_differentiate_like_cat(dtype):
    from stair_pyg.models.base import share_storage, stacked_rows

    gen = torch.Generator().manual_seed(0)
    top = torch.nn.Parameter(torch.randn(5, 3, generator=gen, dtype=dtype))
    bottom = torch.nn.Parameter(torch.randn(4, 3, generator=gen, dtype=dtype))
    before = torch.cat([top, bottom]).detach().clone()
    share_storage(top, bottom)
    assert torch.equal(torch.cat([top, bottom]), before)  # values kept
    x = stacked_rows(top, bottom)
    assert x.data_ptr() == top.data_ptr() and torch.equal(x, before)  # a view, no copy
    weights = torch.randn(9, 3, generator=gen, dtype=torch.float64)
    (x.double() * weights).sum().backward()
    torch.testing.assert_close(top.grad.double(), weights[:5])
    torch.testing.assert_close(bottom.grad.double(), weights[5:])
    with torch.no_grad():  # an optimizer's in-place update of one table shows in the next stack
        bottom.add_(1.0)
    assert torch.equal(stacked_rows(top, bottom)[5:], before[5:] + 1)
    # Tables in separate memory are concatenated: the same values.
    a, b = torch.randn(2, 3, dtype=dtype), torch.randn(3, 3, dtype=dtype)
    y = stacked_rows(a, b)
    assert y.data_ptr() != a.data_ptr() and torch.equal(y, torch.cat([a, b]))
    assert torch.equal(stacked_rows(b[1:], b[:1]), torch.cat([b[1:], b[:1]]))  # wrong order


def test_stair_tables_share_one_block_and_train_as_separate_tables_do():
    model = STAIR.from_data(make_data(num_users=50, num_items=60), embedding_dim=8)
    users_w, items_w = model.user_embedding.weight, model.item_embedding.weight
    assert items_w.data_ptr() == users_w.data_ptr() + users_w.numel() * users_w.element_size()
    separate = copy.deepcopy(model)  # deepcopy clones each parameter into its own memory
    assert separate.item_embedding.weight.data_ptr() != \
        separate.user_embedding.weight.data_ptr() + users_w.numel() * users_w.element_size()
    gen = torch.Generator().manual_seed(4)
    users = torch.randint(1, 50, (12,), generator=gen)
    pos = torch.randint(0, 60, (12,), generator=gen)
    neg = torch.randint(0, 60, (12,), generator=gen)
    for m in (model, separate):
        m.recommendation_loss(users, pos, neg).backward()
    for a, b in zip(model.parameters(), separate.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=0)
    with torch.no_grad():
        for a, b in zip(model.get_embedding(), separate.get_embedding()):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
