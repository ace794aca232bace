"""metric.hardware: what the machine offers for reduced precision, the explanations benchmarks print from
it, and ``precision="auto"``."""

import numpy as np
import pytest

from metric import hardware as hw_module
from metric._util import autocast
from metric.baselines import BASELINES
from metric.data import TwoAFCData
from metric.evaluate import evaluate_2afc, lpips_2afc_distances
from metric.hardware import (
    PRECISION_CHOICES,
    Hardware,
    check_precision,
    choose_precision,
    hardware_from,
    parse_cpuinfo,
)

_BASE = "fpu vme de pse tsc msr pae sse sse2 ssse3 sse4_1 sse4_2 avx f16c fma avx2 bmi1 bmi2"
_AVX512 = " avx512f avx512dq avx512cd avx512bw avx512vl"


def _cpuinfo(model: str, flags: str) -> str:
    """Two processors, as /proc/cpuinfo lists them (the first one counts)."""
    block = f"processor\t: {{n}}\nvendor_id\t: X\nmodel name\t: {model}\nflags\t\t: {flags}\n"
    return block.format(n=0) + "\n" + block.format(n=1)


CPUS = {
    "amx": _cpuinfo(
        "Intel(R) Xeon(R) Platinum 8480+",
        _BASE + _AVX512 + " avx512_vnni avx512_bf16 avx512_fp16 amx_bf16 amx_tile amx_int8",
    ),
    "bf16_only": _cpuinfo("AMD EPYC 9654 96-Core Processor", _BASE + _AVX512 + " avx512_vnni avx512_bf16"),
    "vnni_only": _cpuinfo("Intel(R) Xeon(R) Platinum 8272CL CPU @ 2.60GHz", _BASE + _AVX512 + " avx512_vnni"),
    "none": _cpuinfo("AMD EPYC", _BASE),
}


def _hw(kind: str, **kwargs) -> Hardware:
    return hardware_from(cpuinfo=CPUS[kind], cpu_capability="AVX512", cores=8, threads=8, **kwargs)


def test_it_reads_the_model_and_flags_of_the_first_processor():
    model, flags = parse_cpuinfo(CPUS["vnni_only"])
    assert model == "Intel(R) Xeon(R) Platinum 8272CL CPU @ 2.60GHz"
    assert {"avx2", "avx512f", "avx512_vnni"} <= flags and "avx512_bf16" not in flags


def test_it_reads_arm_features_and_survives_an_empty_cpuinfo():
    model, flags = parse_cpuinfo("processor\t: 0\nFeatures\t: fp asimd bf16 sve\nCPU part\t: 0xd40\n")
    assert model == "" and "bf16" in flags
    assert parse_cpuinfo("") == ("", frozenset())


@pytest.mark.parametrize(
    ("kind", "units", "words", "absent"),
    [
        ("amx", "amx", "bf16 matmuls and convolutions have AMX tiles", "emulated"),
        ("bf16_only", "avx512_bf16", "AVX-512 BF16 without AMX", "AMX tiles"),
        ("vnni_only", "none", "no bf16 instructions: bf16 is emulated", "AVX-512 BF16 without"),
        ("none", "none", "no bf16 instructions: bf16 is emulated", "AMX tiles"),
    ],
)
def test_it_explains_bf16_from_the_detected_flags(kind, units, words, absent):
    hw = _hw(kind)
    assert hw.bf16_units == units
    text = hw.bf16_explanation()
    assert words in text and absent not in text
    assert "get_cpu_capability()` says AVX512" in text


def test_it_names_vnni_as_int8_only_where_it_is_the_only_avx512_extra():
    assert "`avx512_vnni` speeds up int8 only" in _hw("vnni_only").bf16_explanation()
    assert "avx512_vnni" not in _hw("none").bf16_explanation()


def test_it_says_the_flags_are_unknown_without_a_cpuinfo():
    hw = hardware_from(cpuinfo=None, cpu_capability="DEFAULT")
    assert hw.bf16_units == "unknown" and hw.cpu_flags is None
    assert "unknown" in hw.bf16_explanation() and "flags unknown" in hw.machine_line()
    assert choose_precision("auto", hardware=hw).ran == "fp32"


def test_the_machine_line_lists_model_flags_capability_and_gpu():
    line = _hw("amx", cuda_name="NVIDIA H200", cuda_capability=(9, 0)).machine_line()
    assert line.startswith("Intel(R) Xeon(R) Platinum 8480+, 8 cores (flags avx2 avx512f")
    assert "amx_bf16" in line and "torch CPU capability AVX512" in line
    assert line.endswith("GPU NVIDIA H200 (compute capability 9.0)")
    assert "GPU" not in _hw("none").machine_line() and "(flags avx2;" in _hw("none").machine_line()


@pytest.mark.parametrize(
    ("name", "cc", "words"),
    [
        ("NVIDIA H200", (9, 0), "tensor cores for fp16 and bf16"),
        ("Tesla T4", (7, 5), "tensor cores for fp16, none for bf16"),
        ("Tesla P100-PCIE-16GB", (6, 0), "no tensor cores"),
    ],
)
def test_it_explains_the_cuda_device_by_name_and_capability(name, cc, words):
    text = _hw("none", cuda_name=name, cuda_capability=cc).cuda_explanation()
    assert text.startswith(f"{name} (compute capability {cc[0]}.{cc[1]})") and words in text


def test_it_says_when_there_is_no_cuda_device():
    assert _hw("none").cuda_explanation() == "No CUDA device was detected."


@pytest.mark.parametrize(
    ("kind", "ran", "why"),
    [
        ("amx", "bf16", "AMX"),
        ("bf16_only", "bf16", "avx512_bf16"),
        ("vnni_only", "fp32", "no bf16 instructions"),
        ("none", "fp32", "no bf16 instructions"),
    ],
)
def test_auto_picks_bf16_only_on_a_cpu_with_bf16_units(kind, ran, why):
    choice = choose_precision("auto", device="cpu", hardware=_hw(kind))
    assert (choice.asked, choice.ran) == ("auto", ran) and why in choice.reason


@pytest.mark.parametrize(
    ("cc", "ran"), [((9, 0), "fp16"), ((8, 0), "fp16"), ((7, 0), "fp16"), ((6, 1), "fp32"), (None, "fp32")]
)
def test_auto_picks_fp16_on_cuda_from_capability_7(cc, ran):
    hw = _hw("amx", cuda_name="GPU X" if cc else "", cuda_capability=cc)
    choice = choose_precision("auto", device="cuda:0", hardware=hw)
    assert choice.ran == ran
    assert ("7.0" in choice.reason) if cc else ("unknown" in choice.reason)


def test_an_explicit_precision_runs_as_asked_on_any_hardware():
    for precision in ("fp32", "bf16", "fp16"):
        choice = choose_precision(precision, hardware=_hw("none"))
        assert choice.describe() == {"asked": precision, "ran": precision, "reason": "asked for"}


@pytest.mark.parametrize("bad", ["fp17", "FP32", "", "float16"])
def test_an_unknown_precision_is_a_value_error_naming_the_valid_values(bad):
    with pytest.raises(ValueError, match="auto, fp32, bf16, fp16") as err:
        choose_precision(bad, hardware=_hw("none"))
    assert repr(bad) in str(err.value)
    with pytest.raises(ValueError, match="fp32, bf16, fp16"):
        autocast(bad, __import__("torch").device("cpu"))
    assert check_precision("auto") == "auto" and PRECISION_CHOICES == ("auto", "fp32", "bf16", "fp16")


def test_autocast_wants_auto_resolved_first():
    with pytest.raises(ValueError, match="got 'auto'"):
        autocast("auto", __import__("torch").device("cpu"))


def _tiny(n: int = 6) -> TwoAFCData:
    rng = np.random.default_rng(0)
    ref, p0, p1 = (rng.integers(0, 256, (n, 16, 16, 3), dtype=np.uint8) for _ in range(3))
    return TwoAFCData(ref, p0, p1, rng.random(n), ["cnn"] * n)


def test_lpips_distances_refuse_an_unknown_precision_before_any_work():
    from metric import LPIPS

    model = LPIPS(net="alex", backbone_weights="random", seed=0, warn_official_heads=False)
    with pytest.raises(ValueError, match="precision must be one of auto, fp32, bf16, fp16"):
        lpips_2afc_distances(model, _tiny(), precision="half")


def test_the_evaluation_report_says_which_precision_ran_and_why(monkeypatch):
    monkeypatch.setattr(hw_module, "detect", lambda **kw: _hw("vnni_only"))
    report = evaluate_2afc(_tiny(), {"l2_lab": BASELINES["l2_lab"]}, n_boot=10, precision="auto")
    assert report["precision"]["asked"] == "auto" and report["precision"]["ran"] == "fp32"
    assert "no bf16 instructions" in report["precision"]["reason"]
    assert report["hardware"]["bf16_units"] == "none" and "avx512_vnni" in report["hardware"]["cpu_flags"]
    monkeypatch.setattr(hw_module, "detect", lambda **kw: _hw("amx"))
    report = evaluate_2afc(_tiny(), {"l2_lab": BASELINES["l2_lab"]}, n_boot=10, precision="auto")
    assert report["precision"]["ran"] == "bf16" and "AMX" in report["precision"]["reason"]


def test_the_cli_offers_auto_and_rejects_other_precisions(capsys):
    from metric.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["evaluate", "--bapps", "nowhere", "--precision", "fp17"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "fp17" in err and "auto" in err and "bf16" in err


def test_the_cli_describes_this_machine_and_what_auto_picks(capsys):
    import json

    from metric.cli import main

    assert main(["hardware"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["machine"] and out["bf16"] and out["auto"]["cpu"]["asked"] == "auto"
    assert out["auto"]["cpu"]["ran"] in ("bf16", "fp32") and out["cores"] >= 1


def test_the_detected_machine_has_a_model_and_cores():
    hw = hw_module.detect(cuda=False)
    assert hw.cpu_model and hw.cores >= 1 and hw.threads >= 1
    assert hw.bf16_units in ("amx", "avx512_bf16", "none", "unknown")


# --- the benchmark's text comes from the detection -----------------------------------------------------
def _ev(fp32: float, bf16: float) -> dict:
    return {"fp32": {"rates": [fp32] * 3}, "bf16": {"rates": [bf16] * 3}}


def test_the_bench_explains_bf16_from_the_detection_never_a_fixed_sentence():
    from devtools.bench_metric import bf16_lines

    # the Xeon: avx512_vnni only, bf16 at 0.93x the reference while fp32 ran at 1.47x
    text = " ".join(bf16_lines(_hw("vnni_only"), _ev(1470, 930)))
    assert "no bf16 instructions: bf16 is emulated" in text and "AVX-512 BF16" not in text
    assert "bf16 ran at 0.63x our fp32 (as the flags predict)" in text and "picks **fp32**" in text
    text = " ".join(bf16_lines(_hw("bf16_only"), _ev(1500, 2200)))
    assert "AVX-512 BF16 without AMX" in text and "picks **bf16**" in text and "no AMX" in text
    text = " ".join(bf16_lines(_hw("amx"), _ev(1500, 1400)))
    assert "AMX tiles" in text and "`auto` would lose on this machine" in text


def test_the_bench_gpu_line_and_machine_line_come_from_the_detection():
    from devtools.bench_metric import gpu_line
    from devtools.reports import machine_line

    assert "no CUDA device was detected" in gpu_line(_hw("none"))
    line = gpu_line(_hw("none", cuda_name="Tesla T4", cuda_capability=(7, 5)))
    assert "Tesla T4 (compute capability 7.5)" in line and "picks fp16" in line
    line = machine_line(_hw("vnni_only"))
    assert line.startswith("Intel(R) Xeon(R) Platinum 8272CL") and "avx512_vnni" in line
    assert "Python 3." in line and "numpy" in line
