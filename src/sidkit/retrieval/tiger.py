"""TIGER-style generative retrieval: an encoder-decoder transformer that writes the next item's SID.

Tokens (one embedding table): 0 padding, 1 the decoder's start, then each SID depth in its own range
(level 0's K_0 codes, level 1's K_1, ..., the collision digit's last), then ``user_buckets`` hashed
user tokens. The encoder reads the user token and the H history items, oldest first, each item as
one position holding the sum of the embeddings of its D SID tokens (1 + H positions, left-padded).
The decoder starts from the start token and predicts depth d's code from the codes before it (and
the encoder memory), with a softmax over that depth's range only. Training is teacher forcing: the
joint cross-entropy of the D codes. Inference is :func:`constrained_beam_search` over the trie of
the candidates' SIDs, so every result is a real item, with the items the user already has excluded
inside the search.

Two encoders (``TigerConfig.encoder``):

- ``causal`` (default): history position t attends positions up to t, so one pass over a window of
  H + 1 items trains all H next-item targets, each decoder reading only the memory of its own past
  (as SASRec trains). About H times the training targets per second of the bidirectional form,
  which on two shared CPU cores decides whether TIGER converges within minutes or hours.
- ``bidirectional`` (TIGER's own): every position attends every other; one (history, target) example
  per encoder pass, ``windows_per_user`` examples per user per epoch.

Every item's SID must be unique: pass codes with the collision digit appended
(:meth:`sidkit.ids.SemanticIds.with_dedup_digit`); :func:`tiger_codes` does it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sidkit.errors import ConfigError, DataError
from sidkit.features.hashing import field_salt, hash_rows, stable_keys
from sidkit.ids import SemanticIds
from sidkit.progress import Bar
from sidkit.retrieval.beam import constrained_beam_search
from sidkit.retrieval.data import PAD, Examples, NextItemData, sequence_windows, training_windows
from sidkit.retrieval.layers import CrossAttention, DecoderBlock, EncoderBlock
from sidkit.retrieval.metrics import recall_at
from sidkit.retrieval.training import TrainingHistory, resolve_precision, train_with_early_stopping
from sidkit.retrieval.trie import SidTrie

PAD_TOKEN, START_TOKEN = 0, 1
_FIRST_CODE_TOKEN = 2
ENCODERS: tuple[str, ...] = ("causal", "bidirectional")

Memory = list[tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class TigerConfig:
    """Size and training of :class:`Tiger`.

    Attributes:
        width: model width (d_model). heads: attention heads. encoder_layers, decoder_layers: blocks.
            hidden: feed-forward width.
        dropout: dropout everywhere (default 0: an epoch sees fresh windows and early stopping ends
            training before the model fits them twice; on CPU dropout's random draws cost about 40%
            of a step).
        user_buckets: rows of the hashed user token.
        encoder: ``causal`` or ``bidirectional`` (see the module docstring).
        epochs, patience: the most epochs, and epochs without a better validation Recall@10 before
            stopping (the best epoch's weights are kept). Patience 4 is one pass over the data at the
            default ``windows_per_user`` (an epoch is about a quarter of it): with patience 2 and 1,000
            validation users, whose Recall@10 moves by about 0.01 between epochs, one ML-1M seed
            stopped at its fifth epoch 0.05 below the others' validation score. The cap of 60 is a
            guard: on ML-1M leave-one-out, half the runs under a cap of 30 were still improving at
            epoch 30 (validation Recall@10 up about 0.001 an epoch), so 30 cut them short.
        windows_per_user: per user per epoch, at most this many windows of H + 1 items (causal) or
            (history, target) examples (bidirectional), fresh each epoch; None: every window (causal
            only: every training target once per epoch). The default 4 makes an ML-1M epoch about a
            quarter of the data, so that early stopping looks at validation four times as often.
        batch_size, learning_rate, weight_decay: AdamW training (batch_size counts windows).
        beam: beams of the constrained search (at least the largest K asked for).
        valid_examples: validation examples decoded after each epoch (a fixed random subset).
        eval_batch_size: examples per beam-search batch.
        precision: "auto", "float32" or "bfloat16" (autocast; see :mod:`sidkit.retrieval.training`).
    """

    width: int = 128
    heads: int = 4
    encoder_layers: int = 2
    decoder_layers: int = 1
    hidden: int = 256
    dropout: float = 0.0
    user_buckets: int = 2000
    encoder: str = "causal"
    epochs: int = 60
    patience: int = 4
    windows_per_user: int | None = 4
    batch_size: int = 128
    learning_rate: float = 2e-3
    weight_decay: float = 0.01
    beam: int = 20
    valid_examples: int = 2000
    eval_batch_size: int = 256
    precision: str = "auto"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def check(self) -> None:
        for name in ("width", "heads", "encoder_layers", "decoder_layers", "hidden", "user_buckets", "epochs",
                     "patience", "batch_size", "beam", "valid_examples", "eval_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"tiger {name} must be a positive integer, got {value!r}", where=f"tiger.{name}")
        if self.windows_per_user is not None and (isinstance(self.windows_per_user, bool)
                                                  or not isinstance(self.windows_per_user, int)
                                                  or self.windows_per_user < 1):
            raise ConfigError(f"tiger windows_per_user must be a positive integer or None, got "
                              f"{self.windows_per_user!r}", where="tiger.windows_per_user")
        if self.width % self.heads:
            raise ConfigError(f"tiger width {self.width} is not a multiple of heads {self.heads}",
                              where="tiger.heads", fix="pick heads that divide the width")
        if self.encoder not in ENCODERS:
            raise ConfigError(f"unknown tiger encoder {self.encoder!r}", where="tiger.encoder",
                              fix=f"use one of {', '.join(ENCODERS)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"tiger dropout must be in [0, 1), got {self.dropout}", where="tiger.dropout")


def tiger_codes(sids: SemanticIds, item_ids: np.ndarray | None = None) -> SemanticIds:
    """``sids`` with the collision digit appended (items sharing a SID get 0, 1, ... by item id)."""
    return sids.with_dedup_digit(item_ids=item_ids)


class TigerModel(nn.Module):
    """The encoder-decoder. Sizes: ``sizes`` (D,) codes per depth, H history items, W width."""

    def __init__(self, sizes: tuple[int, ...], history: int, config: TigerConfig) -> None:
        super().__init__()
        self.sizes = tuple(int(s) for s in sizes)
        self.history = history
        self.causal = config.encoder == "causal"
        offsets = np.concatenate([[0], np.cumsum(self.sizes)]) + _FIRST_CODE_TOKEN
        self.code_offsets = tuple(int(o) for o in offsets[:-1])
        self.user_offset = int(offsets[-1])
        width = config.width
        self.embedding = nn.Embedding(self.user_offset + config.user_buckets, width, padding_idx=PAD_TOKEN)
        self.encoder_positions = nn.Embedding(1 + history, width)
        self.decoder_positions = nn.Embedding(len(self.sizes), width)
        self.encoder = nn.ModuleList(EncoderBlock(width, config.heads, config.hidden, config.dropout)
                                     for _ in range(config.encoder_layers))
        self.decoder = nn.ModuleList(DecoderBlock(width, config.heads, config.hidden, config.dropout)
                                     for _ in range(config.decoder_layers))
        self.encoder_norm = nn.LayerNorm(width)
        self.decoder_norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, sum(self.sizes))
        self.drop = nn.Dropout(config.dropout)
        nn.init.normal_(self.embedding.weight, std=0.02)
        nn.init.normal_(self.encoder_positions.weight, std=0.02)
        nn.init.normal_(self.decoder_positions.weight, std=0.02)
        with torch.no_grad():
            self.embedding.weight[PAD_TOKEN].zero_()

    @property
    def depth(self) -> int:
        return len(self.sizes)

    def encode(self, users: torch.Tensor, items: torch.Tensor) -> tuple[Memory, torch.Tensor]:
        """(E,) user tokens and (E, T, D) SID tokens of T <= H history items (PAD_TOKEN rows for padding)
        -> per decoder layer the memory's keys and values, and the (E, 1 + T) bool of real positions."""
        e, t, _ = items.shape
        x = torch.cat([self.embedding(users).unsqueeze(1), self.embedding(items).sum(dim=2)], dim=1)
        present = torch.cat([torch.ones((e, 1), dtype=torch.bool, device=items.device), items[..., 0] != PAD_TOKEN],
                            dim=1)
        positions = torch.arange(self.history - t, self.history + 1, device=items.device)
        x = self.drop(x + self.encoder_positions(positions))
        keys = present[:, None, None, :]
        if self.causal:
            causal = torch.ones((t + 1, t + 1), dtype=torch.bool, device=items.device).tril()
            keys = keys & causal  # the user token (position 0) is visible to every position
        for block in self.encoder:
            x = block(x, keys)
        memory = self.encoder_norm(x)
        return [_cross(block).memory(memory) for block in self.decoder], present

    def decode(self, memory: Memory, mask: torch.Tensor, prefixes: torch.Tensor) -> torch.Tensor:
        """(E, G, d) codes of G groups (beams, or targets) per example -> (E * G, d + 1, W) decoder states
        (start token first); ``mask`` is the cross-attention mask (see ``CrossAttention``)."""
        e, groups, d = prefixes.shape
        offsets = torch.tensor(self.code_offsets[:d], device=prefixes.device, dtype=torch.int64)
        tokens = torch.cat([torch.full((e, groups, 1), START_TOKEN, device=prefixes.device, dtype=torch.int64),
                            prefixes + offsets], dim=-1).view(e * groups, d + 1)
        positions = torch.arange(d + 1, device=tokens.device)
        x = self.drop(self.embedding(tokens) + self.decoder_positions(positions))
        for block, kv in zip(self.decoder, memory, strict=True):
            x = block(x, kv, mask)
        return self.decoder_norm(x)

    def level_logits(self, states: torch.Tensor, depth: int) -> torch.Tensor:
        """(..., W) states -> (..., K_depth) logits of depth ``depth``'s codes."""
        start = sum(self.sizes[:depth])
        weight = self.head.weight[start:start + self.sizes[depth]]
        bias = self.head.bias[start:start + self.sizes[depth]]
        return F.linear(states, weight, bias)

    def code_loss(self, states: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Mean over targets and depths of the cross-entropy of (R, D) ``codes`` from (R, D, W) states."""
        logits = self.head(states)  # (R, D, sum K): each depth reads its own slice
        total = logits.new_zeros((), dtype=torch.float32)
        start = 0
        for depth, size in enumerate(self.sizes):
            total = total + F.cross_entropy(logits[:, depth, start:start + size].float(), codes[:, depth])
            start += size
        return total / self.depth

    def loss(self, users: torch.Tensor, items: torch.Tensor, codes: torch.Tensor,
             valid: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher-forced loss.

        Causal: ``items`` (B, H, D) are a window's first H items, ``codes`` (B, H, D) the codes of the
        item after each, ``valid`` (B, H) which targets count; target j reads memory positions 0..j+1.
        Bidirectional: ``items`` (B, H, D) histories, ``codes`` (B, D) each one's next item.
        """
        memory, present = self.encode(users, items)
        if not self.causal:
            states = self.decode(memory, present[:, None, None, :], codes[:, None, :-1])
            return self.code_loss(states, codes)
        b, h, d = codes.shape
        # Query rows are (target j, depth) pairs; target j sees memory up to position j + 1.
        limit = torch.arange(h, device=codes.device).repeat_interleave(d) + 1
        sees = torch.arange(h + 1, device=codes.device)[None, :] <= limit[:, None]  # (H * D, 1 + H)
        mask = (present[:, None, None, :] & sees[None, None]).expand(b, 1, h * d, h + 1)
        states = self.decode(memory, mask, codes[..., :-1]).view(b, h, d, -1)
        assert valid is not None
        return self.code_loss(states[valid], codes[valid])


def _cross(block: nn.Module) -> CrossAttention:
    assert isinstance(block, DecoderBlock)
    return block.cross


class Tiger:
    """TIGER retriever over the items' SIDs (with the collision digit: unique per item).

    Args:
        codes: SIDs of every catalogue row, unique (see :func:`tiger_codes`).
        config: size and training.
        seed: initialization, training windows, dropout and the user hash.
        device: torch device ("cpu" or "cuda").
        progress: show progress bars (None: when stderr is a terminal). log: one line per epoch.
    """

    def __init__(self, codes: SemanticIds, config: TigerConfig | None = None, *, seed: int = 0,
                 device: str = "cpu", progress: bool | None = None, log: Callable[[str], None] | None = None) -> None:
        self.config = config or TigerConfig()
        self.config.check()
        if len(np.unique(codes.codes, axis=0)) != len(codes):
            raise DataError("the SIDs are not unique per item", where="codes",
                            fix="append the collision digit with tiger_codes(sids)")
        self.codes = codes
        self.seed = seed
        self.device = torch.device(device)
        self.progress = progress
        self.log = log
        self.model: TigerModel | None = None
        self.history_: TrainingHistory | None = None
        self._trie: SidTrie | None = None
        self._candidate_mask = np.zeros(0, dtype=bool)
        self._item_tokens: torch.Tensor | None = None
        self._users: np.ndarray | None = None
        self._user_salt = field_salt(seed, "tiger.user")

    @property
    def num_parameters(self) -> int:
        return 0 if self.model is None else sum(p.numel() for p in self.model.parameters())

    def fit(self, data: NextItemData) -> Tiger:
        """Train on ``data.train`` with early stopping on validation Recall@10; returns self."""
        if len(self.codes) != data.num_items:
            raise DataError(f"{len(self.codes)} SIDs for {data.num_items} catalogue items", where="codes",
                            fix="encode the same catalogue the data come from")
        config = self.config
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 0x7163]))
        self.model = model = TigerModel(self.codes.sizes, data.history, config).to(self.device)
        self._prepare(data)
        self._users = users_tokens = self._user_tokens(data.user_ids)
        valid = data.valid
        if len(valid) > config.valid_examples:
            valid = valid.take(np.sort(rng.choice(len(valid), config.valid_examples, replace=False)))
        cache: dict[int, tuple[np.ndarray, ...]] = {}

        def epoch_data(epoch: int) -> tuple[np.ndarray, ...]:
            if epoch not in cache:
                cache.clear()
                if model.causal:
                    cache[epoch] = sequence_windows(data.train, length=data.history + 1, rng=rng,
                                                    per_user=config.windows_per_user)
                else:
                    cache[epoch] = training_windows(data.train, history=data.history,
                                                    per_user=config.windows_per_user or 8, rng=rng)
            return cache[epoch]

        def batches(epoch: int) -> Iterator[tuple[torch.Tensor, ...]]:
            parts = epoch_data(epoch)
            for start in range(0, len(parts[0]), config.batch_size):
                stop = start + config.batch_size
                users = torch.from_numpy(users_tokens[parts[0][start:stop]]).to(self.device)
                if model.causal:
                    _, windows, label_start = (part[start:stop] for part in parts)
                    items = self._tokens_of(windows[:, :-1])
                    targets = windows[:, 1:]
                    codes = self._tokens_of(targets) - self._offsets
                    columns = np.arange(targets.shape[1])[None, :]
                    valid_mask = (targets != PAD) & (columns >= label_start[:, None])
                    yield users, items, codes, torch.from_numpy(valid_mask).to(self.device)
                else:
                    _, histories, targets = (part[start:stop] for part in parts)
                    yield users, self._tokens_of(histories), self._tokens_of(targets) - self._offsets

        def validate() -> float:
            if len(valid) == 0:
                return 0.0
            return recall_at(self._recommend(valid, 10, progress=False), valid.targets, 10)

        self.history_ = train_with_early_stopping(
            model, batches=batches, examples_per_epoch=lambda epoch: len(epoch_data(epoch)[0]),
            loss=lambda batch: model.loss(*batch), validate=validate, epochs=config.epochs,
            patience=config.patience, learning_rate=config.learning_rate, weight_decay=config.weight_decay,
            device=self.device, precision=resolve_precision(config.precision, self.device), description="tiger",
            progress=self.progress, log=self.log)
        return self

    def recommend(self, examples: Examples, k: int, *, candidates: np.ndarray | None = None) -> np.ndarray:
        """(E, k) catalogue rows, best first (-1 where fewer than k items remained); ``candidates``
        ((N,) bool) narrows the candidates further: the beam then searches the trie of those items only."""
        if self.model is None:
            raise ConfigError("tiger is not trained", where="Tiger.recommend", fix="call fit(data) first")
        if k > self.config.beam:
            raise ConfigError(f"K = {k} is larger than the beam ({self.config.beam}); a beam search returns at "
                              "most beam items", where="--k", fix=f"pass --beam {k} or more, or a smaller K")
        with torch.autocast(self.device.type, dtype=torch.bfloat16,
                            enabled=resolve_precision(self.config.precision, self.device) == torch.bfloat16):
            return self._recommend(examples, k, progress=self.progress, candidates=candidates)

    # ----- internals -------------------------------------------------------------------------------

    def _prepare(self, data: NextItemData) -> None:
        assert self.model is not None
        offsets = np.asarray(self.model.code_offsets, dtype=np.int64)
        tokens = np.full((data.num_items + 1, self.model.depth), PAD_TOKEN, dtype=np.int64)  # last row: padding
        tokens[:-1] = self.codes.codes + offsets
        self._item_tokens = torch.from_numpy(tokens).to(self.device)
        self._offsets = torch.from_numpy(offsets).to(self.device)
        self._trie = SidTrie.build(self.codes.codes, self.codes.sizes, np.flatnonzero(data.candidates)).to(self.device)
        self._candidate_mask = np.asarray(data.candidates, dtype=bool)
        self._num_items = data.num_items

    def _user_tokens(self, user_ids: np.ndarray) -> np.ndarray:
        assert self.model is not None
        buckets = hash_rows(stable_keys(np.asarray(user_ids)), buckets=self.config.user_buckets,
                            salt=self._user_salt)
        return buckets + self.model.user_offset

    def _tokens_of(self, rows: np.ndarray) -> torch.Tensor:
        """(..., D) SID tokens of catalogue ``rows`` (:data:`PAD` rows give PAD_TOKEN)."""
        assert self._item_tokens is not None
        index = torch.from_numpy(np.where(rows < 0, self._num_items, rows)).to(self.device)
        return self._item_tokens[index]

    @torch.no_grad()
    def _recommend(self, examples: Examples, k: int, *, progress: bool | None,
                   candidates: np.ndarray | None = None) -> np.ndarray:
        assert self.model is not None and self._trie is not None and self._users is not None
        model = self.model
        trie = self._trie
        if candidates is not None:
            allowed = np.flatnonzero(self._candidate_mask & np.asarray(candidates, dtype=bool))
            trie = SidTrie.build(self.codes.codes, self.codes.sizes, allowed).to(self.device)
        model.eval()
        out = np.full((len(examples), k), -1, dtype=np.int64)
        size = self.config.eval_batch_size
        with Bar("tiger beam search", len(examples), enabled=progress, rate_unit="users") as bar:
            for start in range(0, len(examples), size):
                part = examples.take(np.arange(start, min(start + size, len(examples))))
                users = torch.from_numpy(self._users[part.users]).to(self.device)
                memory, present = model.encode(users, self._tokens_of(part.histories))
                mask = present[:, None, None, :]
                excluded = torch.from_numpy(part.exclusion_mask(self._num_items)).to(self.device)

                def step(depth: int, prefixes: torch.Tensor, memory: Memory = memory,
                         mask: torch.Tensor = mask) -> torch.Tensor:
                    states = model.decode(memory, mask, prefixes)[:, -1]
                    logits = model.level_logits(states, depth).float()
                    return F.log_softmax(logits, dim=-1).view(*prefixes.shape[:2], -1)

                result = constrained_beam_search(step, trie, len(part), self.config.beam, excluded=excluded)
                out[start:start + len(part)] = result.items[:, :k].cpu().numpy()
                bar.advance(len(part))
        return out
