"""What the machine offers for reduced precision, and the precision ``"auto"`` picks on it.

Benchmarks and evaluation reports describe the machine they ran on from this module, never from a fixed
sentence: the CPU model and its flags (``/proc/cpuinfo``), ``torch.backends.cpu.get_cpu_capability()``,
torch's thread count and the CUDA device's name and compute capability.

``hardware_from`` is a pure function of those inputs (tests feed it a fake cpuinfo); ``detect`` reads
them from this machine. ``choose_precision`` resolves ``precision="auto"``:

- CPU: bf16 where the CPU has bf16 units (``amx_bf16`` tiles or ``avx512_bf16``), else fp32. Without them
  (``avx512_vnni`` only accelerates int8) bf16 is converted to fp32 inside every kernel, and the bench
  measured it slower than fp32 (0.93x the reference, against 1.47x for fp32, on such a Xeon).
- CUDA: fp16 on compute capability 7.0 or newer (tensor cores), else fp32.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from metric.errors import MetricError

PRECISIONS = ("fp32", "bf16", "fp16")
PRECISION_CHOICES = ("auto", *PRECISIONS)

# The flags that matter for the precisions this package runs, in the order the machine line lists them.
RELEVANT_FLAGS = (
    "avx2",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
)

FP16_MIN_CAPABILITY = (7, 0)  # Volta: the first tensor cores


def parse_cpuinfo(text: str) -> tuple[str, frozenset[str]]:
    """The CPU model name and flags of a /proc/cpuinfo text (the first processor's; x86 ``flags`` or
    Arm ``Features``); ``("", frozenset())`` for an empty text."""
    model, flags = "", None
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key = key.strip().lower()
        if not model and key in ("model name", "cpu model", "hardware"):
            model = value.strip()
        elif flags is None and key in ("flags", "features"):
            flags = frozenset(value.split())
        if model and flags is not None:
            break
    return model, flags or frozenset()


@dataclass(frozen=True)
class Hardware:
    """One machine, as far as reduced precision is concerned. ``cpu_flags`` is None when unknown (no
    /proc/cpuinfo, e.g. macOS or Windows)."""

    cpu_model: str = ""
    cpu_flags: frozenset[str] | None = None
    cpu_capability: str = ""  # torch.backends.cpu.get_cpu_capability(): DEFAULT, AVX2, AVX512, ...
    cores: int = 0
    threads: int = 0
    cuda_name: str = ""
    cuda_capability: tuple[int, int] | None = None

    # --- CPU ----------------------------------------------------------------------------------------
    @property
    def has_amx_bf16(self) -> bool:
        return bool(self.cpu_flags) and {"amx_bf16", "amx_tile"} <= self.cpu_flags

    @property
    def has_avx512_bf16(self) -> bool:
        return bool(self.cpu_flags) and "avx512_bf16" in self.cpu_flags

    @property
    def bf16_units(self) -> str:
        """``"amx"``, ``"avx512_bf16"``, ``"none"`` or ``"unknown"`` (flags not readable)."""
        if self.cpu_flags is None:
            return "unknown"
        if self.has_amx_bf16:
            return "amx"
        if self.has_avx512_bf16:
            return "avx512_bf16"
        return "none"

    @property
    def relevant_flags(self) -> list[str]:
        return [f for f in RELEVANT_FLAGS if self.cpu_flags and f in self.cpu_flags]

    def _capability_words(self) -> str:
        return f"`torch.backends.cpu.get_cpu_capability()` says {self.cpu_capability or 'nothing'}"

    def bf16_explanation(self) -> str:
        """One sentence on what bf16 runs on, on this CPU (for benchmark reports)."""
        units = self.bf16_units
        cap = self._capability_words()
        if units == "amx":
            return (
                "bf16 matmuls and convolutions have AMX tiles (`/proc/cpuinfo` has `amx_bf16` and "
                f"`amx_tile`; {cap}), so bf16 can run several times faster than fp32."
            )
        if units == "avx512_bf16":
            return (
                "AVX-512 BF16 without AMX (`/proc/cpuinfo` has `avx512_bf16` but no `amx_bf16`; "
                f"{cap}): bf16 dot products run on the AVX-512 vector units, about twice fp32's rate "
                "at best."
            )
        if units == "unknown":
            return (
                f"the CPU's flags are unknown (no `/proc/cpuinfo`; {cap}), so whether bf16 has hardware "
                "units here is not known."
            )
        vnni = " (`avx512_vnni` speeds up int8 only)" if "avx512_vnni" in self.cpu_flags else ""
        return (
            f"no bf16 instructions: bf16 is emulated (`/proc/cpuinfo` has neither `avx512_bf16` nor "
            f"`amx_bf16`{vnni}; {cap}): every bf16 kernel converts to fp32 and back, so bf16 is "
            "expected to be no faster than fp32."
        )

    # --- CUDA ---------------------------------------------------------------------------------------
    @property
    def cuda_capability_text(self) -> str:
        return "" if self.cuda_capability is None else "{}.{}".format(*self.cuda_capability)

    def cuda_explanation(self) -> str:
        """One sentence on the CUDA device for reduced precision (or that there is none)."""
        if not self.cuda_name:
            return "No CUDA device was detected."
        cap = self.cuda_capability or (0, 0)
        name = f"{self.cuda_name} (compute capability {self.cuda_capability_text or 'unknown'})"
        if cap >= (8, 0):
            return f"{name}: tensor cores for fp16 and bf16."
        if cap >= FP16_MIN_CAPABILITY:
            return f"{name}: tensor cores for fp16, none for bf16."
        return f"{name}: no tensor cores, so fp16 and bf16 are not expected to gain."

    # --- summaries ----------------------------------------------------------------------------------
    def machine_line(self) -> str:
        """The CPU (model, cores, precision flags, torch's kernels) and the GPU, in one line."""
        flags = (
            "flags unknown"
            if self.cpu_flags is None
            else ("flags " + " ".join(self.relevant_flags) if self.relevant_flags else "no AVX2/AVX-512")
        )
        parts = [
            f"{self.cpu_model or 'unknown CPU'}, {self.cores} cores ({flags}; "
            f"torch CPU capability {self.cpu_capability or 'unknown'})"
        ]
        if self.cuda_name:
            cc = self.cuda_capability_text or "unknown"
            parts.append(f"GPU {self.cuda_name} (compute capability {cc})")
        return ", ".join(parts)

    def describe(self) -> dict:
        """The facts, for JSON reports."""
        return {
            "cpu_model": self.cpu_model,
            "cpu_flags": None if self.cpu_flags is None else self.relevant_flags,
            "cpu_capability": self.cpu_capability,
            "bf16_units": self.bf16_units,
            "cores": self.cores,
            "threads": self.threads,
            "cuda_name": self.cuda_name or None,
            "cuda_capability": self.cuda_capability_text or None,
        }


def hardware_from(
    *,
    cpuinfo: str | None,
    cpu_capability: str = "",
    cores: int = 0,
    threads: int = 0,
    cuda_name: str = "",
    cuda_capability: tuple[int, int] | None = None,
) -> Hardware:
    """A Hardware from its sources (pure): ``cpuinfo`` is /proc/cpuinfo's text, None when there is none."""
    model, flags = ("", None) if cpuinfo is None else parse_cpuinfo(cpuinfo)
    return Hardware(
        cpu_model=model,
        cpu_flags=flags,
        cpu_capability=cpu_capability,
        cores=cores,
        threads=threads,
        cuda_name=cuda_name,
        cuda_capability=tuple(cuda_capability) if cuda_capability is not None else None,
    )


def detect(*, cuda: bool = True, cpuinfo_path: str = "/proc/cpuinfo") -> Hardware:
    """This machine. ``cuda=False`` skips the GPU (no CUDA initialisation)."""
    import platform

    import torch

    try:
        with open(cpuinfo_path) as handle:
            cpuinfo = handle.read()
    except OSError:
        cpuinfo = None
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except (AttributeError, RuntimeError):  # torch < 2.0
        capability = ""
    name, cc = "", None
    if cuda and torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        cc = tuple(torch.cuda.get_device_capability(0))
    hw = hardware_from(
        cpuinfo=cpuinfo,
        cpu_capability=capability,
        cores=os.cpu_count() or 0,
        threads=torch.get_num_threads(),
        cuda_name=name,
        cuda_capability=cc,
    )
    if not hw.cpu_model:
        hw = replace(hw, cpu_model=platform.processor() or platform.machine())
    return hw


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision asked for, the one that runs, and why."""

    asked: str
    ran: str
    reason: str

    def describe(self) -> dict:
        return {"asked": self.asked, "ran": self.ran, "reason": self.reason}


def check_precision(precision: str, *, allow_auto: bool = True) -> str:
    """``precision`` itself, or a MetricError (a ValueError) naming the valid values."""
    valid = PRECISION_CHOICES if allow_auto else PRECISIONS
    if precision not in valid:
        raise MetricError(f"precision must be one of {', '.join(valid)}; got {precision!r}")
    return precision


def choose_precision(precision: str, *, device="cpu", hardware: Hardware | None = None) -> PrecisionChoice:
    """Resolve ``precision`` (``auto``, ``fp32``, ``bf16`` or ``fp16``) for ``device``. ``auto`` picks
    bf16 on a CPU with bf16 units (AMX or AVX-512 BF16), fp16 on a CUDA device of compute capability
    >= 7.0, and fp32 everywhere else; ``hardware`` defaults to ``detect()``."""
    check_precision(precision)
    if precision != "auto":
        return PrecisionChoice(precision, precision, "asked for")
    kind = getattr(device, "type", None) or str(device).split(":", 1)[0]
    if kind == "cuda":
        if hardware is None:
            import torch

            index = getattr(device, "index", None)
            index = index if index is not None else torch.cuda.current_device()
            cc = tuple(torch.cuda.get_device_capability(index))
            hardware = Hardware(cuda_name=torch.cuda.get_device_name(index), cuda_capability=cc)
        cc = hardware.cuda_capability or (0, 0)
        name = hardware.cuda_name or "the CUDA device"
        if cc >= FP16_MIN_CAPABILITY:
            return PrecisionChoice(
                "auto", "fp16", f"{name} has compute capability {hardware.cuda_capability_text} >= 7.0"
            )
        return PrecisionChoice(
            "auto",
            "fp32",
            f"{name} has compute capability {hardware.cuda_capability_text or 'unknown'} < 7.0 "
            "(no tensor cores)",
        )
    if kind != "cpu":
        return PrecisionChoice("auto", "fp32", f"no reduced-precision rule for device {kind!r}")
    hardware = hardware if hardware is not None else detect(cuda=False)
    units = hardware.bf16_units
    if units == "amx":
        return PrecisionChoice("auto", "bf16", "the CPU has AMX bf16 tiles (amx_bf16)")
    if units == "avx512_bf16":
        return PrecisionChoice("auto", "bf16", "the CPU has AVX-512 BF16 (avx512_bf16), no AMX")
    if units == "unknown":
        return PrecisionChoice("auto", "fp32", "the CPU's flags are unknown (no /proc/cpuinfo)")
    return PrecisionChoice(
        "auto",
        "fp32",
        "the CPU has no bf16 instructions (neither avx512_bf16 nor amx_bf16): bf16 would be emulated",
    )
