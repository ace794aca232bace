"""Model bundles: a trained LPIPS as people download it (a folder, or a zip of one).

A bundle holds

- ``heads.pth``: the heads in the lpips file format (``lin{k}.model.1.weight``), so the reference
  ``lpips.LPIPS(pretrained=True, net=..., model_path="heads.pth")`` loads them;
- ``trunk.pth``: the trunk's ``features`` state dict, present when the trunk is not torchvision's ImageNet
  one (k-means, random, tune, scratch); ``metric.LPIPS(backbone_weights="trunk.pth")`` loads it;
- ``model_card.json`` and ``MODEL_CARD.md``: what the model is (trunk and why, data, held-out 2AFC with
  its confidence interval next to the controls and baselines of the same run, sha256s, usage).

``load_bundle(path)`` returns a ready ``metric.LPIPS``. A zip is hostile until validated: only the expected
member names (flat, or all in one plainly named folder), no paths, links or encryption, each member under
its size cap, and the files' sha256s must match the card; anything else is a ``MetricError`` saying what.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import zipfile
import zlib
from pathlib import Path

from metric.backbones import BACKBONES, backbone_spec
from metric.errors import MetricError
from metric.heads import VERSIONS

FORMAT = "perceptlab-model/1"
HEADS, TRUNK, CARD_JSON, CARD_MD = "heads.pth", "trunk.pth", "model_card.json", "MODEL_CARD.md"
MIB = 1024 * 1024
MEMBER_CAPS = {HEADS: 1 * MIB, TRUNK: 256 * MIB, CARD_JSON: 1 * MIB, CARD_MD: 1 * MIB}
MAX_ZIP_BYTES = sum(MEMBER_CAPS.values()) + MIB
FOLDER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
SHA256 = re.compile(r"[0-9a-f]{64}")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(MIB), b""):
            digest.update(block)
    return digest.hexdigest()


# --- writing ----------------------------------------------------------------------------------------
def usage(card: dict) -> dict:
    """Code that loads the bundle: with metric (the bundle, or its two files) and with the reference
    lpips package (the heads, then the shipped trunk copied into the reference's slices)."""
    net, version = card["net"], card.get("version", "0.1")
    has_trunk = TRUNK in card.get("files", {})
    trunk_arg = f'backbone_weights="{TRUNK}"' if has_trunk else 'backbone_weights="imagenet"'
    ours = (
        "import metric.bundle\n"
        'model = metric.bundle.load_bundle("<the downloaded zip or its folder>")\n'
        "d = model(x0, x1)  # N x 3 x H x W tensors in [-1, 1]; normalize=True for [0, 1]\n"
        "# or from the files:\n"
        "import metric\n"
        f'model = metric.LPIPS(net="{net}", version="{version}", {trunk_arg}, head_weights="{HEADS}")\n'
    )
    reference = (
        "import lpips\n"
        f'model = lpips.LPIPS(pretrained=True, net="{net}", version="{version}", model_path="{HEADS}"'
        + (", pnet_rand=True)\n" if has_trunk else ")\n")
    )
    if has_trunk:
        reference += (
            "import torch\n"
            f'trunk = torch.load("{TRUNK}", map_location="cpu", weights_only=True)\n'
            "# the reference names the trunk's layers slice<k>.<index>; the file names them <index>\n"
            'model.net.load_state_dict({k: trunk[k.split(".", 1)[1]] for k in model.net.state_dict()})\n'
        )
    reference += "d = model(x0, x1)  # inputs in [-1, 1]\n"
    return {"metric": ours, "lpips": reference}


def _fmt(value, digits: int = 3) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def card_markdown(card: dict) -> str:
    """MODEL_CARD.md: the card in words."""
    trunk, data, ev = card.get("trunk", {}), card.get("data", {}), card.get("evaluation", {})
    lines = [
        f"# {card.get('name', 'LPIPS model')}",
        "",
        f"LPIPS (`{card['net']}`, version {card.get('version', '0.1')}, "
        f"variant {card.get('variant', 'lin')}) "
        f"trained with perceptlab on human 2AFC judgments. Created {card.get('created', '')}; "
        f"code {card.get('code_version', 'unknown')}.",
        "",
        "## Trunk",
        "",
        f"- ran: **{trunk.get('used', '')}** (asked for: {trunk.get('requested', '')})",
        f"- why: {trunk.get('reason', '')}",
        f"- source: `{trunk.get('source', '')}`",
    ]
    corpus = trunk.get("corpus")
    if corpus:
        lines.append(
            f"- k-means corpus: {corpus.get('patches')} patches drawn with seed {corpus.get('seed')} "
            "from the "
            f"{corpus.get('split')} split ({corpus.get('items')} items; images {corpus.get('images')}), "
            f"digest `{corpus.get('digest')}`"
        )
    lines.append(
        f"- shipped as `{TRUNK}`" if TRUNK in card.get("files", {}) else "- torchvision's ImageNet weights"
    )
    study = data.get("study", {})
    lines += [
        "",
        "## Data",
        "",
        f"- study: {study.get('name', '')} (`{study.get('id', '')}`, {study.get('kind', '')})",
        f"- trained on {data.get('train_items')} train items, {data.get('train_judgments')} judgments",
        f"- categories: {', '.join(data.get('categories', []))}",
        "",
        f"## Held-out evaluation ({ev.get('measure', '2afc')} on the {ev.get('split', 'val')} split)",
        "",
    ]
    rows = ev.get("metrics", [])
    if rows:
        lines += [
            f"{ev.get('n_items')} items, {ev.get('n_judgments')} judgments; 95% bootstrap CI.",
            "",
            "| metric | kind | category | score | 95% CI | items |",
            "|---|---|---|---|---|---|",
        ]
        for r in rows:
            ci = f"{_fmt(r['ci_low'])}–{_fmt(r['ci_high'])}" if r.get("ci_low") is not None else ""
            name = f"**{r['metric']}**" if r.get("this_model") else r["metric"]
            lines.append(
                f"| {name} | {r['kind']} | {r['category']} | {_fmt(r['score'])} | {ci} | {r['n_items']} |"
            )
    else:
        lines.append("No held-out evaluation is recorded for this model.")
    lines += ["", "## Files", ""]
    for name, info in sorted(card.get("files", {}).items()):
        lines.append(f"- `{name}`: {info['bytes']} bytes, sha256 `{info['sha256']}`")
    use = usage(card)
    lines += [
        "",
        "## Usage",
        "",
        "```python",
        use["metric"].rstrip(),
        "```",
        "",
        "With the reference package:",
        "",
        "```python",
        use["lpips"].rstrip(),
        "```",
        "",
    ]
    return "\n".join(lines)


def write_bundle(
    out_dir: str | os.PathLike,
    *,
    heads: str | os.PathLike,
    card: dict,
    trunk: str | os.PathLike | None = None,
) -> Path:
    """Write a bundle folder: the heads (and trunk) copied in, the card completed with the format, the
    files' sizes and sha256s and the usage snippets, as model_card.json and MODEL_CARD.md."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    card = {**card, "format": FORMAT, "files": {}}
    backbone_spec(card["net"])  # a known net, or a MetricError
    for name, src in ((HEADS, heads), (TRUNK, trunk)):
        if src is None:
            continue
        shutil.copyfile(src, out / name)
        card["files"][name] = {"sha256": _sha256(out / name), "bytes": (out / name).stat().st_size}
    card["usage"] = usage(card)
    (out / CARD_JSON).write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    (out / CARD_MD).write_text(card_markdown(card))
    return out


def write_bundle_zip(
    path: str | os.PathLike,
    *,
    heads: str | os.PathLike,
    card: dict,
    trunk: str | os.PathLike | None = None,
    folder: str = "model",
) -> Path:
    """The bundle as a zip whose members sit in one folder named ``folder``; written atomically."""
    if not FOLDER.fullmatch(folder):
        raise MetricError(f"bundle folder name {folder!r} must match {FOLDER.pattern}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        with tempfile.TemporaryDirectory() as work:
            written = write_bundle(work, heads=heads, card=card, trunk=trunk)
            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
                for name in (CARD_MD, CARD_JSON, HEADS, TRUNK):
                    if (written / name).is_file():
                        zf.write(written / name, f"{folder}/{name}")
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


# --- reading ----------------------------------------------------------------------------------------
def _member_name(name: str) -> tuple[str, str]:
    """(folder, file) of a zip member, or a MetricError for anything but NAME or FOLDER/NAME."""
    parts = name.split("/")
    if "\\" in name or "\x00" in name or len(parts) > 2 or any(p in ("", ".", "..") for p in parts[:-1]):
        raise MetricError(f"bundle zip: member {name!r} is not an expected file name (no paths allowed)")
    folder, base = (parts[0], parts[1]) if len(parts) == 2 else ("", parts[0])
    if folder and not FOLDER.fullmatch(folder):
        raise MetricError(f"bundle zip: member {name!r} is not in a plainly named folder")
    if base and base not in MEMBER_CAPS:
        raise MetricError(
            f"bundle zip: unexpected member {name!r}; a bundle holds only {sorted(MEMBER_CAPS)}"
        )
    return folder, base


def _extract_zip(path: Path, dest: Path) -> None:
    """Validate a bundle zip member by member and write its files, flat, into dest."""
    if path.stat().st_size > MAX_ZIP_BYTES:
        raise MetricError(f"bundle zip: {path.stat().st_size} bytes is over the cap of {MAX_ZIP_BYTES}")
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise MetricError(f"bundle zip: {path} is not a readable zip ({exc})") from exc
    with zf:
        infos = zf.infolist()
        if len(infos) > 2 * len(MEMBER_CAPS):
            raise MetricError(f"bundle zip: {len(infos)} members; a bundle has at most {len(MEMBER_CAPS)}")
        folders, seen = set(), set()
        for info in infos:
            folder, base = _member_name(info.filename)
            folders.add(folder)
            mode = (info.external_attr >> 16) & 0o170000
            if mode == 0o120000:
                raise MetricError(f"bundle zip: member {info.filename!r} is a symbolic link")
            if info.flag_bits & 0x1:
                raise MetricError(f"bundle zip: member {info.filename!r} is encrypted")
            if info.is_dir():
                if base:
                    raise MetricError(f"bundle zip: {info.filename!r} is a folder named like a file")
                continue
            if not base:
                raise MetricError(f"bundle zip: member {info.filename!r} has no file name")
            if base in seen:
                raise MetricError(f"bundle zip: {base} appears twice")
            seen.add(base)
            cap = MEMBER_CAPS[base]
            if info.file_size > cap:
                raise MetricError(f"bundle zip: {base} is {info.file_size} bytes, over its cap of {cap}")
            with zf.open(info) as src:
                try:
                    data = src.read(cap + 1)
                except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
                    raise MetricError(f"bundle zip: {base} cannot be read ({exc})") from exc
            if len(data) > cap:
                raise MetricError(f"bundle zip: {base} inflates past its cap of {cap} bytes")
            (dest / base).write_bytes(data)
        if len(folders) > 1:
            raise MetricError(f"bundle zip: members are spread over several folders {sorted(folders)}")


def _check_card(folder: Path) -> dict:
    path = folder / CARD_JSON
    if not path.is_file():
        raise MetricError(f"bundle: {CARD_JSON} is missing from {folder}")
    if path.stat().st_size > MEMBER_CAPS[CARD_JSON]:
        raise MetricError(f"bundle: {CARD_JSON} is over its cap of {MEMBER_CAPS[CARD_JSON]} bytes")
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MetricError(f"bundle: {CARD_JSON} is not JSON ({exc})") from exc
    except RecursionError as exc:
        raise MetricError(f"bundle: {CARD_JSON} is nested too deeply to be a model card") from exc
    if not isinstance(card, dict) or card.get("format") != FORMAT:
        raise MetricError(f"bundle: {CARD_JSON} is not a {FORMAT} card")
    if not isinstance(card.get("net"), str) or card["net"] not in BACKBONES:
        raise MetricError(f"bundle: the card's net {card.get('net')!r} is not one of {sorted(BACKBONES)}")
    if not isinstance(card.get("version", "0.1"), str) or card.get("version", "0.1") not in VERSIONS:
        raise MetricError(f"bundle: the card's version {card.get('version')!r} is not one of {VERSIONS}")
    files = card.get("files")
    if not isinstance(files, dict) or HEADS not in files or set(files) - {HEADS, TRUNK}:
        raise MetricError(f"bundle: the card's files must list {HEADS} (and {TRUNK} when shipped)")
    for name, info in files.items():
        if not isinstance(info, dict) or not SHA256.fullmatch(str(info.get("sha256", ""))):
            raise MetricError(f"bundle: the card has no sha256 for {name}")
        if not (folder / name).is_file():
            raise MetricError(f"bundle: {name} is listed in the card but missing")
        if (folder / name).stat().st_size > MEMBER_CAPS[name]:
            raise MetricError(f"bundle: {name} is over its cap of {MEMBER_CAPS[name]} bytes")
        if _sha256(folder / name) != info["sha256"]:
            raise MetricError(f"bundle: {name} does not match the sha256 in the card (altered or damaged)")
    if not isinstance(card.get("trunk", {}), dict):
        raise MetricError(f"bundle: the card's trunk must be an object, got {type(card['trunk']).__name__}")
    if (folder / TRUNK).is_file() and TRUNK not in files:
        raise MetricError(f"bundle: {TRUNK} is present but the card does not list it")
    return card


def read_card(path: str | os.PathLike) -> dict:
    """The validated card of a bundle folder or zip."""
    with _opened(Path(path)) as folder:
        return _check_card(folder)


class _opened:
    """A bundle folder as is, or a validated zip extracted into a temporary folder."""

    def __init__(self, path: Path):
        self.path, self.tmp = path, None

    def __enter__(self) -> Path:
        if self.path.is_dir():
            return self.path
        if not self.path.is_file():
            raise MetricError(f"bundle not found: {self.path} (a downloaded zip or its unpacked folder)")
        self.tmp = tempfile.TemporaryDirectory(prefix="perceptlab-bundle-")
        try:
            _extract_zip(self.path, Path(self.tmp.name))
        except BaseException:
            self.tmp.cleanup()
            raise
        return Path(self.tmp.name)

    def __exit__(self, *exc):
        if self.tmp is not None:
            self.tmp.cleanup()


def load_bundle(path: str | os.PathLike, *, allow_download: bool = True, **kwargs):
    """A ``metric.LPIPS`` from a bundle folder or zip: the card's net and version, the shipped trunk (or
    torchvision's ImageNet weights when none ships) and the heads. ``kwargs`` go to LPIPS (e.g.
    ``spatial=True``)."""
    from metric.lpips import LPIPS

    with _opened(Path(path)) as folder:
        card = _check_card(folder)
        trunk = folder / TRUNK if TRUNK in card["files"] else "imagenet"
        model = LPIPS(
            net=card["net"],
            version=card.get("version", "0.1"),
            backbone_weights=trunk,
            head_weights=folder / HEADS,
            allow_download=allow_download,
            **kwargs,
        )
    model.head_source = f"bundle:{Path(path).name}"
    model.backbone.source = f"bundle:{card.get('trunk', {}).get('source', trunk)}"
    model.card = card
    return model
