"""Saved meta-learners: ``evaluate(..., save_agent=DIR)`` and ``saving.load_agent(DIR)``.

A loaded agent is not meta-trained again and, with the seed it was saved with, scores
exactly as the run that saved it; a save for another benchmark, or a damaged save, is
refused with one message naming the file and the mismatch.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import metarl_bench
from metarl_bench import harness
from metarl_bench.agents import Adapter, Agent
from metarl_bench.results import load_record
from metarl_bench.saving import MANIFEST, STATE, SavedAgentError, load_agent

BANDIT = "MetaRL/Bandit-k5-n10-smoke-v0"
SINUSOID = "MetaRL/Sinusoid-K5-smoke-v0"

# tiny meta-training: a few iterations or updates, enough to move the weights off their initialisation
CASES = {
    "maml-trpo": (BANDIT, {"iterations": 2}),
    "rl2": (BANDIT, {"num_trials": 16, "num_minibatches": 2, "update_epochs": 1, "hidden_size": 8,
                     "train_env_steps": 16 * 10 * 2, "task_aux_coef": 0.1}),
    "reptile": (BANDIT, {"iterations": 2}),  # the RL implementation
    "maml": (SINUSOID, {"iterations": 5}),
    "meta-sgd": (SINUSOID, {"iterations": 5}),
}


def _save(tmp_path: Path, name: str = "maml-trpo", seed: int = 1) -> tuple[Path, Any]:
    bench, overrides = CASES[name]
    folder = tmp_path / f"{name}-saved"
    record = metarl_bench.evaluate(metarl_bench.agent(name, **overrides), bench, seed=seed, save_agent=folder)
    return folder, record


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_loaded_agent_scores_exactly_as_the_run_that_saved_it(tmp_path, name):
    bench, _ = CASES[name]
    folder, saved = _save(tmp_path, name, seed=1)
    assert saved.meta_train["env_steps"] > 0

    agent = load_agent(folder)
    assert agent.loaded_from is not None and agent.loaded_from.folder == folder
    record = metarl_bench.evaluate(agent, bench, seed=1)
    assert np.array_equal(record.returns, saved.returns)
    assert record.scores["online"] == saved.scores["online"]
    assert record.meta_train["env_steps"] == 0 and record.meta_train["wall_seconds"] == 0.0
    assert record.meta_train["loaded_from"] == str(folder)
    assert record.meta_train["saved"]["env_steps"] == saved.meta_train["env_steps"]
    assert record.agent["config"] == saved.agent["config"] and record.variant == saved.variant

    # the saved weights are what scores: the same agent with other weights adapts differently
    other = load_agent(folder)
    other.load_state_dict(_shifted(torch.load(folder / STATE, weights_only=True)))
    assert not np.array_equal(metarl_bench.evaluate(other, bench, seed=1).returns, saved.returns)


def _shifted(state: Any) -> Any:
    """``state`` with every floating-point tensor moved by a different amount per entry (a
    uniform shift would leave a softmax policy unchanged)."""
    if isinstance(state, torch.Tensor):
        if not state.is_floating_point():
            return state
        return state + 0.05 * torch.sin(torch.arange(state.numel(), dtype=state.dtype)).reshape(state.shape)
    if isinstance(state, dict):
        return {k: _shifted(v) for k, v in state.items()}
    return state


def test_a_loaded_agent_is_not_meta_trained(tmp_path, monkeypatch):
    folder, saved = _save(tmp_path)
    agent = load_agent(folder)

    def refuse(ctx: Any) -> None:
        raise AssertionError("a loaded agent was meta-trained again")

    monkeypatch.setattr(agent, "meta_train", refuse)
    record = harness.evaluate(agent, BANDIT)  # no seed: the one it was saved with
    assert record.seed == 1 and np.array_equal(record.returns, saved.returns)


def test_the_manifest_says_what_was_saved(tmp_path):
    folder, saved = _save(tmp_path)
    manifest = json.loads((folder / MANIFEST).read_text())
    bench = metarl_bench.benchmark(BANDIT)
    assert manifest["agent"]["name"] == "maml-trpo" and manifest["agent"]["variant"] == saved.variant
    assert manifest["agent"]["config"] == saved.agent["config"]
    assert manifest["agent"]["class"] == "metarl_bench.baselines.gradient.maml_rl:MAMLTRPO"
    assert manifest["benchmark"]["id"] == BANDIT and manifest["benchmark"]["task_hash"] == bench.task_hash
    assert manifest["seed"] == 1 and manifest["meta_train"]["env_steps"] == saved.meta_train["env_steps"]
    assert set(manifest["packages"]) == {"metarl-bench", "torch", "numpy", "gymnasium", "stable-baselines3", "sb3-contrib"}
    assert manifest["packages"]["torch"] == torch.__version__ and manifest["packages"]["numpy"] == np.__version__
    state = torch.load(folder / STATE, weights_only=True)
    assert set(state) == {"policy"} and all(isinstance(v, torch.Tensor) for v in state["policy"].values())
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".tmp-")]  # no temporary file left


def test_a_record_of_a_loaded_agent_is_written_and_reads_back(tmp_path):
    folder, saved = _save(tmp_path)
    record = metarl_bench.evaluate(load_agent(folder), BANDIT, seed=1, results=tmp_path / "results")
    back = load_record(record.path(tmp_path / "results"))
    assert back.meta_train["loaded_from"] == str(folder) and np.array_equal(back.returns, saved.returns)


def test_a_loaded_agent_with_results_keeps_its_own_seed(tmp_path):
    folder, _ = _save(tmp_path)
    with pytest.raises(ValueError, match=r"meta-trained with seed 1.*seed=1"):
        metarl_bench.evaluate(load_agent(folder), BANDIT, seed=2, results=tmp_path / "results")
    assert not (tmp_path / "results").exists()
    metarl_bench.evaluate(load_agent(folder), BANDIT, seed=2)  # without results: another evaluation seed


def test_a_reference_agent_saves_and_loads_with_no_state(tmp_path):
    saved = metarl_bench.evaluate(metarl_bench.agent("thompson"), BANDIT, seed=0, save_agent=tmp_path / "t")
    assert torch.load(tmp_path / "t" / STATE, weights_only=True) == {}
    again = metarl_bench.evaluate(load_agent(tmp_path / "t"), BANDIT, seed=0)
    assert np.array_equal(again.returns, saved.returns)


# --- refusals ------------------------------------------------------------------------------


def test_another_benchmark_is_refused(tmp_path):
    folder, _ = _save(tmp_path)
    other = "MetaRL/Bandit-k10-n10-smoke-v0"
    with pytest.raises(SavedAgentError) as err:
        metarl_bench.evaluate(load_agent(folder), other, seed=1)
    msg = str(err.value)
    assert str(folder / MANIFEST) in msg and BANDIT in msg and other in msg and "\n" not in msg
    with pytest.raises(SavedAgentError, match="meta-trained for"):
        load_agent(folder, benchmark=other)


def test_changed_task_lists_are_refused(tmp_path):
    folder, _ = _save(tmp_path)
    bench = metarl_bench.benchmark(BANDIT)
    moved = dataclasses.replace(bench, task_seed=bench.task_seed + 1)  # same id, other tasks
    with pytest.raises(SavedAgentError) as err:
        metarl_bench.evaluate(load_agent(folder), moved, seed=1)
    msg = str(err.value)
    assert str(folder / MANIFEST) in msg and bench.task_hash in msg and moved.task_hash in msg


def test_a_truncated_state_is_refused(tmp_path):
    folder, _ = _save(tmp_path)
    data = (folder / STATE).read_bytes()
    (folder / STATE).write_bytes(data[: len(data) // 2])
    with pytest.raises(SavedAgentError) as err:
        load_agent(folder)
    assert str(folder / STATE) in str(err.value) and "truncated" in str(err.value)


def test_an_edited_state_of_the_same_size_is_refused(tmp_path):
    folder, _ = _save(tmp_path)
    data = bytearray((folder / STATE).read_bytes())
    data[-40] ^= 0xFF
    (folder / STATE).write_bytes(bytes(data))
    with pytest.raises(SavedAgentError, match="checksum"):
        load_agent(folder)


def test_a_state_that_torch_cannot_read_is_refused(tmp_path):
    folder, _ = _save(tmp_path)
    junk = b"not a torch file" * 10
    (folder / STATE).write_bytes(junk)
    manifest = json.loads((folder / MANIFEST).read_text())
    import hashlib

    manifest["state"].update(bytes=len(junk), sha256=hashlib.sha256(junk).hexdigest())  # consistent, but junk
    (folder / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(SavedAgentError) as err:
        load_agent(folder)
    assert str(folder / STATE) in str(err.value) and "torch.load" in str(err.value)


def test_a_corrupt_manifest_is_refused(tmp_path):
    folder, _ = _save(tmp_path)
    text = (folder / MANIFEST).read_text()
    (folder / MANIFEST).write_text(text[: len(text) // 2])
    with pytest.raises(SavedAgentError) as err:
        load_agent(folder)
    assert str(folder / MANIFEST) in str(err.value) and "not valid JSON" in str(err.value)


def test_a_manifest_missing_fields_is_refused(tmp_path):
    folder, _ = _save(tmp_path)
    manifest = json.loads((folder / MANIFEST).read_text())
    del manifest["benchmark"]["task_hash"]
    (folder / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(SavedAgentError, match=r"manifest.json: field 'benchmark'"):
        load_agent(folder)


@pytest.mark.parametrize("missing", ["folder", MANIFEST, STATE])
def test_missing_files_are_refused(tmp_path, missing):
    folder, _ = _save(tmp_path)
    if missing == "folder":
        target, named = tmp_path / "nowhere", tmp_path / "nowhere"
    else:
        (folder / missing).unlink()
        target, named = folder, folder / missing
    with pytest.raises(SavedAgentError) as err:
        load_agent(target)
    assert str(named) in str(err.value) and "\n" not in str(err.value)


def test_a_state_another_agent_saved_is_refused(tmp_path):
    folder, _ = _save(tmp_path)  # maml-trpo's state ...
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["agent"].update(name="thompson", config={}, **{"class": "x:y"})  # ... claimed by a reference
    (folder / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(SavedAgentError, match=r"state.pt: agent 'thompson' cannot use the saved state"):
        load_agent(folder)


def test_saving_into_a_folder_of_other_files_is_refused_before_training(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    agent = metarl_bench.agent("maml-trpo", iterations=1)
    with pytest.raises(SavedAgentError, match="holds other files"):
        metarl_bench.evaluate(agent, BANDIT, save_agent=tmp_path)
    assert getattr(agent, "policy", None) is None  # refused before meta-training
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_saving_again_replaces_a_save(tmp_path):
    folder, first = _save(tmp_path, seed=1)
    _, second = _save(tmp_path, seed=2)
    record = harness.evaluate(load_agent(folder), BANDIT)
    assert record.seed == 2 and np.array_equal(record.returns, second.returns)
    assert not np.array_equal(record.returns, first.returns)


class _Zeros(Adapter):
    def act(self, obs: np.ndarray) -> np.ndarray:
        return np.zeros(len(obs), dtype=np.int64)


class _LearnsButCannotSave(Agent):
    name = "learns-no-state"
    learns = True

    def meta_train(self, ctx: Any) -> None:
        raise AssertionError("meta-trained although it cannot be saved")

    def adapter(self, ctx: Any) -> Adapter:
        return _Zeros()


class _UnloadableState(_LearnsButCannotSave):
    name = "unloadable-state"

    def meta_train(self, ctx: Any) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {"thing": object()}


class _Learner(_LearnsButCannotSave):
    """A learner that is not registered: loaded back through its class path."""

    name = "tiny-learner"

    def meta_train(self, ctx: Any) -> None:
        self.arm = torch.tensor(int(ctx.rng.integers(5)))

    def state_dict(self) -> dict[str, Any]:
        return {"arm": self.arm}

    def load_state_dict(self, state: Any) -> None:
        self.arm = state["arm"]

    def adapter(self, ctx: Any) -> Adapter:
        arm = int(self.arm)

        class Fixed(Adapter):
            def act(self, obs: np.ndarray) -> np.ndarray:
                return np.full(len(obs), arm, dtype=np.int64)

        return Fixed()


def test_a_learner_without_state_dict_is_refused_before_training(tmp_path):
    with pytest.raises(ValueError, match="does not implement state_dict and load_state_dict"):
        metarl_bench.evaluate(_LearnsButCannotSave(), BANDIT, save_agent=tmp_path / "s")
    assert not (tmp_path / "s").exists()


def test_a_state_torch_cannot_load_safely_is_refused_when_saving(tmp_path):
    with pytest.raises(SavedAgentError, match=r"weights_only=True"):
        metarl_bench.evaluate(_UnloadableState(), BANDIT, save_agent=tmp_path / "s")
    assert not (tmp_path / "s" / MANIFEST).exists() and not (tmp_path / "s" / STATE).exists()


def test_an_unregistered_learner_loads_through_its_class(tmp_path):
    saved = metarl_bench.evaluate(_Learner(), BANDIT, seed=4, save_agent=tmp_path / "s")
    agent = load_agent(tmp_path / "s")
    assert type(agent).__qualname__ == "_Learner"
    assert np.array_equal(metarl_bench.evaluate(agent, BANDIT, seed=4).returns, saved.returns)


def test_a_loaded_agent_is_not_saved_again(tmp_path):
    folder, _ = _save(tmp_path)
    with pytest.raises(ValueError, match="copy that folder"):
        metarl_bench.evaluate(load_agent(folder), BANDIT, save_agent=tmp_path / "again")


def test_a_learner_saved_on_an_image_benchmark_reloads_identically(tmp_path, write_images):
    from metarl_bench.fewshot_images import fewshot_image_benchmark

    write_images(tmp_path / "images")
    bench = fewshot_image_benchmark(tmp_path / "images", ways=3, shots=1, queries=2, test_classes=3,
                                    test_episodes=5, inner_steps=2, image_size=(8, 8))
    agent = metarl_bench.agent("maml", iterations=3, meta_batch_size=2, hidden_sizes=(4,))
    saved = metarl_bench.evaluate(agent, bench, seed=0, save_agent=tmp_path / "s")
    record = metarl_bench.evaluate(load_agent(tmp_path / "s"), bench, seed=0)
    assert np.array_equal(record.returns, saved.returns) and record.meta_train["env_steps"] == 0
