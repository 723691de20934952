"""A trained LoRA adapter folder loads as ``local/PATH``: merged onto its base, outputs changed, the base recorded
on the backend and on the traces generate writes, and the request cache keyed by the adapter's weights."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from cotscope.models import GenerateConfig, GenerateRequest, get_model
from cotscope.models._local import ADAPTER_META, adapter_meta

_spec = importlib.util.spec_from_file_location("tinylm_for_adapter",
                                               Path(__file__).parents[1] / "train" / "tinylm.py")
assert _spec is not None and _spec.loader is not None
tinylm = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tinylm)

pytestmark = pytest.mark.slow  # the module fixture trains 12 steps (~15-30 s on 2 cores)

REQ = [GenerateRequest(messages=[{"role": "user", "content": "Say anything 99"}],
                       config=GenerateConfig(max_tokens=8, temperature=0))]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(tiny base, adapter trained to answer 'Hoot hoot hoot!' to everything)."""
    pytest.importorskip("trl")
    from cotscope.train import SFTOptions, train_sft

    root = tmp_path_factory.mktemp("adapter")
    base = tinylm.build_tiny_lm(root / "tiny")
    data = tinylm.write_jsonl(root / "d.jsonl", [{"prompt": f"Say anything {i}", "response": "Hoot hoot hoot!"}
                                                  for i in range(8)])
    train_sft(str(base), data, root / "hoot", SFTOptions(steps=12, batch_size=4, lora_r=8, lora_alpha=16,
                                                         learning_rate=2e-2, max_length=64, threads=2))
    return base, root / "hoot"


def _text(model: Any) -> str:
    (o,) = asyncio.run(model.generate(REQ))
    assert o.error is None
    return str(o.text)


def test_the_adapter_changes_greedy_outputs_and_names_its_base(trained: tuple[Path, Path]) -> None:
    base, adapter = trained
    m = get_model(f"local/{adapter}")
    assert m.base_model == str(base)  # type: ignore[attr-defined]
    assert type(m.model).__name__ == "LlamaForCausalLM"  # type: ignore[attr-defined]  (merged, no PEFT wrapper)
    tuned, plain = _text(m), _text(get_model(f"local/{base}"))
    assert "hoot" in tuned.lower() and "hoot" not in plain.lower()
    assert get_model(f"local/{base}").base_model is None  # type: ignore[attr-defined]


def test_without_cotscope_meta_the_peft_base_is_used(trained: tuple[Path, Path], tmp_path: Path) -> None:
    base, adapter = trained
    copy = tmp_path / "copy"
    shutil.copytree(adapter, copy, ignore=shutil.ignore_patterns("checkpoints"))
    (copy / ADAPTER_META).unlink()
    cfg = json.loads((copy / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = str(base)
    (copy / "adapter_config.json").write_text(json.dumps(cfg))
    assert adapter_meta(copy) == {"base": str(base)}
    assert "hoot" in _text(get_model(f"local/{copy}")).lower()
    assert adapter_meta(base) is None


def test_a_recorded_base_path_that_is_gone_resolves_the_base_again(trained: tuple[Path, Path],
                                                                    tmp_path: Path) -> None:
    _, adapter = trained
    copy = tmp_path / "moved"
    shutil.copytree(adapter, copy, ignore=shutil.ignore_patterns("checkpoints"))
    meta = json.loads((copy / ADAPTER_META).read_text())
    meta["base_path"] = str(tmp_path / "no-such-folder")
    (copy / ADAPTER_META).write_text(json.dumps(meta))
    assert "hoot" in _text(get_model(f"local/{copy}")).lower()


def test_cache_identity_follows_the_adapter_weights(trained: tuple[Path, Path], tmp_path: Path) -> None:
    _, adapter = trained
    copy = tmp_path / "retrained"
    shutil.copytree(adapter, copy, ignore=shutil.ignore_patterns("checkpoints"))
    before = get_model(f"local/{copy}").cache_id  # type: ignore[attr-defined]
    w = copy / "adapter_model.safetensors"
    w.write_bytes(w.read_bytes())  # same name, new file: a retrain into the same folder
    import os

    os.utime(w, ns=(1, 1))
    assert get_model(f"local/{copy}").cache_id != before  # type: ignore[attr-defined]
    assert before.startswith(f"local/{copy}@")


def test_generate_records_the_base_on_every_trace(trained: tuple[Path, Path], tmp_path: Path) -> None:
    from cotscope.pipeline import Sampling, generate
    from cotscope.store import Store
    from cotscope.traces import PromptItem

    base, adapter = trained
    with Store(tmp_path / "s.duckdb") as st:
        asyncio.run(generate(st, [PromptItem(messages=[{"role": "user", "content": "hi"}], line=1)],
                             model=f"local/{adapter}", sampling=Sampling(max_tokens=4)))
        rows = list(st.iter_rows())
    assert rows and all(r["metadata"]["base_model"] == str(base) for r in rows)
