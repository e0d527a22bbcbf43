"""The recommender's training step: the loss projects only positions that have a target.

The reference below is the loss as it was shipped before (logits at every
position, padding included, a [B, T, T] repeat scatter, cross-entropy with
`ignore_index`), written out here so the gathered loss is checked against it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from ecomine.models.recommend import PAD_ID, ItemVocab, RecommenderConfig, SequentialRecommender, training_windows


def _reference_logits(model: SequentialRecommender, ids: torch.Tensor) -> torch.Tensor:
    h = model.hidden_states(ids)
    B, T, H = h.shape
    out = torch.addmm(model.out_bias, h.reshape(B * T, H), model.item_embeddings.weight.T).view(B, T, -1)
    if model.config.repeat:
        decay = torch.sigmoid(model.repeat_decay_logit)
        t = torch.arange(T)
        age = (t[:, None] - t[None, :]).clamp(min=0).to(decay.dtype)
        causal = (t[None, :] <= t[:, None]).to(decay.dtype)
        weights = (model.repeat_scale * decay**age * causal).unsqueeze(0) * (ids != PAD_ID).unsqueeze(1).to(decay.dtype)
        index = ids.unsqueeze(1).expand(-1, T, -1)
        out = out.scatter_add(2, index, weights)
    return out


def _reference_loss(model: SequentialRecommender, ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    logits = _reference_logits(model, ids)
    return nn.functional.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1), ignore_index=PAD_ID)


def _batch(n_items: int, max_len: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Short sequences (3-15 items, some repeats) cut as training cuts them: mostly padding."""
    rng = np.random.default_rng(seed)
    seqs = []
    for _ in range(24):
        seq = rng.integers(1, n_items + 1, rng.integers(3, 16))
        seq[rng.random(len(seq)) < 0.3] = seq[0]  # repeats, so the repeat channel matters
        seqs.append(seq)
    x, y = training_windows(seqs, max_len)
    return torch.from_numpy(x), torch.from_numpy(y)


def _model(**kw) -> SequentialRecommender:
    torch.manual_seed(0)
    model = SequentialRecommender(RecommenderConfig(n_items=300, hidden=32, layers=2, heads=2, max_len=20, dropout=0.0, **kw))
    with torch.no_grad():
        model.repeat_scale.fill_(0.7)  # not the init value, so a wrong decay/scale placement shows
    return model


@pytest.mark.parametrize("repeat", [True, False])
def test_full_softmax_loss_equals_the_every_position_loss(repeat):
    model = _model(repeat=repeat)
    ids, targets = _batch(300, 20)
    assert (targets == PAD_ID).float().mean() > 0.3  # the case the gather is for
    new, old = model.loss(ids, targets), _reference_loss(model, ids, targets)
    assert abs(new.item() - old.item()) < 1e-5
    # and the gradients agree, so training is the same, not just the number
    g_new = torch.autograd.grad(new, [model.repeat_scale, model.item_embeddings.weight], allow_unused=True)
    g_old = torch.autograd.grad(_reference_loss(model, ids, targets), [model.repeat_scale, model.item_embeddings.weight],
                                allow_unused=True)
    for a, b in zip(g_new, g_old):
        if b is None:
            assert a is None or torch.all(a == 0)
        else:
            torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-4)


def test_logits_at_every_position_match_the_reference():
    model = _model(repeat=True)
    ids, _ = _batch(300, 20)
    torch.testing.assert_close(model.logits(ids, mask_pad=False), _reference_logits(model, ids), atol=1e-5, rtol=1e-5)
    last = model.logits(ids, last_only=True)
    torch.testing.assert_close(last[:, 0, 1:], _reference_logits(model, ids)[:, -1, 1:], atol=1e-5, rtol=1e-5)
    assert torch.all(last[:, 0, PAD_ID] == float("-inf"))


def test_sampled_softmax_without_repeat_equals_the_shipped_loss():
    model = _model(repeat=False, loss="sampled_softmax", num_negatives=50)
    ids, targets = _batch(300, 20)
    torch.manual_seed(5)
    new = model.loss(ids, targets)
    # the shipped sampled loss: every position through the transformer, then the real targets
    torch.manual_seed(5)
    h = model.hidden_states(ids)
    keep = targets != PAD_ID
    h, tgt = h[keep], targets[keep]
    neg = torch.randint(1, 301, (50,))
    emb = model.item_embeddings.weight
    pos = (h * emb[tgt]).sum(-1, keepdim=True) + model.out_bias[tgt].unsqueeze(-1)
    negl = (h @ emb[neg].T + model.out_bias[neg]).masked_fill(neg.unsqueeze(0) == tgt.unsqueeze(1), float("-inf"))
    old = nn.functional.cross_entropy(torch.cat([pos, negl], -1), torch.zeros_like(tgt))
    assert abs(new.item() - old.item()) < 1e-5


def test_sampled_softmax_repeat_channel_matches_the_full_logits_at_sampled_columns():
    """With repeat on, each sampled logit (target and negatives, duplicates included) is the full model's logit."""
    model = _model(repeat=True, loss="sampled_softmax", num_negatives=400)  # > catalogue: duplicates certain
    ids, targets = _batch(300, 20)
    torch.manual_seed(3)
    new = model.loss(ids, targets)
    torch.manual_seed(3)
    neg = torch.randint(1, 301, (400,))
    full = _reference_logits(model, ids)[targets != PAD_ID]  # [N, V]
    tgt = targets[targets != PAD_ID]
    pos = full.gather(1, tgt[:, None])
    negl = full[:, neg].masked_fill(neg.unsqueeze(0) == tgt.unsqueeze(1), float("-inf"))
    old = nn.functional.cross_entropy(torch.cat([pos, negl], -1), torch.zeros_like(tgt))
    assert abs(new.item() - old.item()) < 1e-5
    # the repeat channel did something: without it the loss differs
    with torch.no_grad():
        model.repeat_scale.zero_()
    torch.manual_seed(3)
    assert abs(model.loss(ids, targets).item() - new.item()) > 1e-3


def test_score_is_the_last_position_of_the_full_logits():
    model = _model(repeat=True)
    model.eval()
    histories = [np.array([3, 5, 3, 9]), np.array([7]), np.array(list(range(1, 40)))]
    scores = model.score(histories)
    from ecomine.models.recommend import left_pad

    ref = _reference_logits(model, left_pad(histories, 20))[:, -1].detach().numpy()
    np.testing.assert_allclose(scores[:, 1:], ref[:, 1:], atol=1e-5, rtol=1e-5)


def test_masked_item_member_learns_a_pattern_and_round_trips(tmp_path):
    """The BERT member: masked-item loss falls on a learnable log, scores the next item, saves and loads."""
    from ecomine.models.recommend import ItemVocab, build_recommender, load_recommender, save_recommender
    from ecomine.models.recommend_bert import MaskedItemRecommender

    torch.manual_seed(0)
    config = RecommenderConfig(n_items=30, hidden=32, layers=1, heads=2, max_len=12, dropout=0.0, arch="bert")
    model = build_recommender(config)
    assert isinstance(model, MaskedItemRecommender)
    rng = np.random.default_rng(0)
    seqs = []
    for _ in range(200):  # item i is always followed by i + 1: the next item is knowable
        start = int(rng.integers(1, 20))
        seqs.append(np.arange(start, start + int(rng.integers(3, 10))))
    x, y = training_windows(seqs, 12)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    first = None
    for step in range(400):
        rows = rng.choice(len(x), 64)
        loss = model.loss(torch.from_numpy(x[rows]), torch.from_numpy(y[rows]))
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first
    model.eval()
    scores = model.score([np.array([4, 5, 6]), np.array([10, 11])])
    assert scores.shape == (2, 31) and np.all(scores[:, PAD_ID] == -np.inf)
    assert scores[0].argmax() == 7 and scores[1].argmax() == 12
    save_recommender(tmp_path, model, ItemVocab(items=[f"i{i}" for i in range(30)]), popular=[1])
    again, _ = load_recommender(tmp_path)
    assert isinstance(again, MaskedItemRecommender)
    np.testing.assert_allclose(again.score([np.array([4, 5, 6])]), scores[:1], rtol=1e-5, atol=1e-5)


def test_bert_backbone_spec_refuses_sampled_softmax():
    from ecomine.specs import RecommendModelSpec

    with pytest.raises(ValueError, match="arch bert trains with loss full_softmax"):
        RecommendModelSpec.model_validate({"backbone": {"kind": "from_config", "arch": "bert"}, "loss": "sampled_softmax"})


def test_presets_are_one_table_read_by_specs_and_models() -> None:
    from ecomine.models import recommend
    from ecomine.specs.train import RECOMMEND_PRESETS, RecommendModelSpec

    for name, sizes in RECOMMEND_PRESETS.items():
        backbone = RecommendModelSpec.model_validate({"preset": name}).backbone
        config = getattr(recommend, name)(n_items=10)
        assert {k: getattr(backbone, k) for k in sizes} == sizes == {k: getattr(config, k) for k in sizes}


@pytest.mark.parametrize("arch", ["bert", "gpt2"])
def test_both_members_beat_popularity_on_the_synthetic_log_through_the_task_batches(arch):
    """Each member trained on the task's own batches (length buckets, trimmed columns, target weights) beats
    popularity on held-out users of the synthetic log: a masking, shifting or weighting bug would not."""
    from ecomine.models.recommend_baselines import fit_baselines
    from ecomine.specs import TrainSpec
    from ecomine.train.recommend_metrics import evaluate_scorer
    from ecomine.train.recommend_task import TASK

    spec = TrainSpec.model_validate({
        "data": {"kind": "synthetic", "users": 400, "items": 80, "days": 150, "seed": 5},
        "model": {"backbone": {"kind": "from_config", "arch": arch, "hidden": 32, "layers": 1, "heads": 2,
                               "max_len": 20, "dropout": 0.1}},
        "eval": {"ks": [10]},
    })
    data = TASK.prepare(spec)
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model = TASK.build_model(spec, data, None)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    rng = np.random.default_rng(0)
    model.train()
    for epoch in range(6):
        order = TASK.epoch_order(data, rng, 32)
        for s in range(0, len(order), 32):
            loss = model(**TASK.batch(data, order[s : s + 32], "cpu"))
            opt.zero_grad()
            loss.backward()
            opt.step()
    torch.set_num_threads(threads)
    model.eval()
    d = data.data
    n = d.n_items + 1
    ours = evaluate_scorer(model, d.valid_histories, d.valid_targets, n_items=n, ks=[10], pad_id=0)
    popular = fit_baselines([s for s in d.train_sequences if len(s)], n, pad_id=0)["most_popular"]
    base = evaluate_scorer(popular, d.valid_histories, d.valid_targets, n_items=n, ks=[10], pad_id=0)
    assert ours["all_items"]["NDCG@10"] > 1.1 * base["all_items"]["NDCG@10"], (ours["all_items"], base["all_items"])


def test_trimmed_batches_score_as_the_full_width_ones():
    """Leading all-padding columns change no score or loss: the task trims them (both members)."""
    for arch in ("gpt2", "bert"):
        torch.manual_seed(0)
        model = build(arch)
        model.eval()
        x, y = _batch(300, 20, seed=3)
        keep = int((x != PAD_ID).sum(1).max()) + 1
        with torch.no_grad():
            torch.manual_seed(1)
            full = model.loss(x, y) if arch == "gpt2" else None
            trimmed = model.loss(x[:, -keep:], y[:, -keep:]) if arch == "gpt2" else None
        if arch == "gpt2":
            torch.testing.assert_close(full, trimmed, rtol=1e-5, atol=1e-5)
        hist = [np.array([5, 6, 7]), np.array([9])]
        wide = model.score(hist)  # scores pad to the batch's longest history (3), not to max_len
        from ecomine.models.recommend_config import left_pad

        ids = left_pad(hist, model.config.max_len - (arch == "bert"))
        with torch.no_grad():
            if arch == "gpt2":
                ref = model.logits(ids, last_only=True)[:, 0].numpy()
            else:
                ids = torch.cat([ids, torch.full((2, 1), model.mask_id)], dim=1)
                table = model.item_table()
                ref = model._project(model._hidden(ids, table)[:, -1], table).numpy()
                ref[:, PAD_ID] = -np.inf
        np.testing.assert_allclose(wide, ref, rtol=1e-4, atol=1e-4)


def build(arch: str):
    from ecomine.models.recommend import build_recommender

    return build_recommender(RecommenderConfig(n_items=300, hidden=32, layers=2, heads=2, max_len=20, dropout=0.0, arch=arch))


def test_a_bert_version_saved_before_the_previous_item_query_loads_as_it_was_trained(tmp_path):
    import json

    config = RecommenderConfig(n_items=30, hidden=32, layers=1, heads=2, max_len=12, arch="bert")
    config.save(tmp_path / "config.json")
    raw = json.loads((tmp_path / "config.json").read_text())
    assert raw.pop("bert_query") == "previous_item"  # what a new run trains
    (tmp_path / "config.json").write_text(json.dumps(raw))  # as an older version wrote it
    assert RecommenderConfig.load(tmp_path / "config.json").bert_query == "mask"


def test_the_bert_repeat_channel_points_at_the_visible_items_by_distance(tmp_path):
    from ecomine.models.recommend import ItemVocab, build_recommender, load_recommender, save_recommender

    torch.manual_seed(0)
    base = dict(n_items=30, hidden=32, layers=1, heads=2, max_len=12, dropout=0.0, arch="bert")
    with_repeat = build_recommender(RecommenderConfig(**base, repeat=True)).eval()
    without = build_recommender(RecommenderConfig(**base, repeat=False)).eval()
    without.load_state_dict({k: v for k, v in with_repeat.state_dict().items() if not k.startswith("repeat_")})
    history = np.array([4, 9, 4, 7])
    assert np.allclose(with_repeat.score([history]), without.score([history]))  # starts at 0: nothing changes
    with torch.no_grad():
        with_repeat.repeat_scale.fill_(2.0)
    lift = with_repeat.score([history])[0] - without.score([history])[0]
    decay = float(torch.sigmoid(with_repeat.repeat_decay_logit.detach()))
    # the [MASK] sits one after the last item: item 7 is 1 step back, 9 three, 4 two and four
    assert lift[7] == pytest.approx(2 * decay, rel=1e-4) and lift[9] == pytest.approx(2 * decay**3, rel=1e-4)
    assert lift[4] == pytest.approx(2 * (decay**2 + decay**4), rel=1e-4)
    assert np.allclose(np.delete(lift, [0, 4, 7, 9]), 0.0, atol=1e-5)
    x = torch.tensor([[0, 0, 4, 9, 4]]), torch.tensor([[0, 0, 9, 4, 7]])
    assert torch.isfinite(with_repeat.train().loss(*x))  # masked positions in training read it too
    save_recommender(tmp_path, with_repeat.eval(), ItemVocab(items=[f"i{i}" for i in range(30)]), popular=[1])
    again, _ = load_recommender(tmp_path)
    np.testing.assert_allclose(again.score([history]), with_repeat.score([history]), rtol=1e-5, atol=1e-5)


def test_vocab_split_keeps_order_and_names_the_unknown_items() -> None:
    vocab = ItemVocab(items=["a", "b", "c"])
    ids, unknown = vocab.split(["c", "x", "a", "x", "y"])
    assert ids.tolist() == [3, 1] and ids.dtype == np.int64 and unknown == ["x", "x", "y"]
    assert ids.tolist() == vocab.encode(["c", "x", "a", "x", "y"]).tolist()  # the ids encode gives
    empty, none = vocab.split([])
    assert empty.tolist() == [] and empty.dtype == np.int64 and none == []
