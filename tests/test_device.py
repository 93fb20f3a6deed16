"""Devices, precisions and threads (formnet_cli.inference.device): refused in one line when
this machine cannot run them."""

from __future__ import annotations

import pytest
import torch

from formnet_cli.errors import InvalidOptionError
from formnet_cli.inference import device as device_module
from formnet_cli.inference.device import cpu_threads, resolve_device, resolve_precision


@pytest.mark.parametrize("spec", ["cuda:99", "tpu", "gpu0", ""])
def test_resolve_device_rejects_unknown_and_unavailable(spec: str) -> None:
    with pytest.raises(InvalidOptionError):
        resolve_device(spec)


@pytest.mark.skipif(torch.cuda.device_count() > 7, reason="this machine has a cuda:7")
def test_resolve_device_rejects_missing_gpu() -> None:
    with pytest.raises(InvalidOptionError, match="not available"):
        resolve_device("cuda:7")
    if not torch.cuda.is_available():
        with pytest.raises(InvalidOptionError, match="not available"):
            resolve_device("cuda")


def test_resolve_device_cpu_and_auto() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    if not torch.cuda.is_available() and not torch.backends.mps.is_available():
        assert resolve_device("auto") == torch.device("cpu")


def test_resolve_precision(cpu_bf16: None) -> None:
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu, supports_half=True) == torch.float32
    assert resolve_precision("bf16", cpu, supports_half=True) == torch.bfloat16
    assert resolve_precision("auto", cpu, supports_half=False) == torch.float32  # a BM3D stage
    with pytest.raises(InvalidOptionError, match="does not support"):
        resolve_precision("fp16", cpu, supports_half=False)


@pytest.mark.parametrize(("fast", "advice"), [({torch.bfloat16}, "use --precision bf16 or fp32"),
                                              (set(), "use --precision fp32$")])
def test_half_precision_the_cpu_would_emulate_is_refused(
        monkeypatch: pytest.MonkeyPatch, fast: set[torch.dtype], advice: str) -> None:
    monkeypatch.setattr(device_module, "cpu_has_fast", lambda dtype: dtype in fast)
    cpu = torch.device("cpu")
    with pytest.raises(InvalidOptionError, match=f"this CPU has no fp16 arithmetic.*{advice}"):
        resolve_precision("fp16", cpu, supports_half=True)
    assert resolve_precision("fp32", cpu, supports_half=True) == torch.float32
    if fast:
        assert resolve_precision("bf16", cpu, supports_half=True) == torch.bfloat16
    else:
        with pytest.raises(InvalidOptionError, match="no bf16 arithmetic"):
            resolve_precision("bf16", cpu, supports_half=True)


def test_cpu_threads_apply_to_the_block_and_are_restored() -> None:
    before = torch.get_num_threads()
    with cpu_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(InvalidOptionError, match="threads must be >= 1"):
        with cpu_threads(0):
            pass
