"""Feature-interaction layers over per-field embeddings: GDCN, MaskNet and a MemoNet-style hashed memory.

Each layer takes the (B, F, dim) output of ``FeatureBlock.fields`` (F fields of width dim) and returns
(B, output_dim). They follow the settings of DTN's published code (Bi et al., arXiv 2408.11611):
GDCN with 2 gated cross layers, MaskNet with 2 serial mask blocks (ffn 128, aggregation 256), and a
hashed memory of field-pair crosses with 2 hashes, order 2.

**How the memory addresses a field cross.** sidkit's fields are continuous (a candidate is a sum of
Semantic-ID token embeddings, the history a mean), and some have no discrete id at all (mean history,
candidate x history). So each field gets a discrete *code* from its embedding by SimHash: the signs of
``code_bits`` fixed random projections. Nearby embeddings share a code, so items with similar
Semantic IDs (new ones included) share memory rows, which a per-item-id address would not give them.
A pair of fields (i, j) with codes (a, b) is the key (i, j, a, b); ``num_hashes`` universal hashes map
it to rows of one learned codebook, and the rows are summed (a multi-hash codebook, as MemoNet's
HCNet: collisions in one hash are disambiguated by the others). Callers that do have discrete ids per
field may pass them as ``field_codes`` instead. Addressing is not differentiable (neither is a hashed
id lookup); the codebook rows are learned, and the field embeddings learn through the other paths.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from sidkit.errors import ConfigError

# Universal hashing ((a * key + b) mod p) mod rows with a Mersenne prime: keys stay below 2^22 and
# multipliers below 2^31, so products fit in int64 without overflow.
_PRIME = (1 << 31) - 1
_MAX_KEY = 1 << 22


def _positive(value: int, name: str, where: str) -> int:
    if int(value) <= 0:
        raise ConfigError(f"{name} must be a positive integer, got {value}", where=where)
    return int(value)


def _check_fields(fields: torch.Tensor, num_fields: int, dim: int, where: str) -> None:
    if fields.ndim != 3 or fields.shape[1] != num_fields or fields.shape[2] != dim:
        raise ConfigError(f"expected fields of shape (B, {num_fields}, {dim}), got {tuple(fields.shape)}",
                          where=where, fix="build the layer with the FeatureBlock's num_fields and dim")


class GDCN(nn.Module):
    """Gated cross network: x_{l+1} = x_0 * (W_c x_l + b_c) * sigmoid(W_g x_l) + x_l, on flattened fields.

    Args:
        num_fields: F.
        dim: width of each field.
        num_layers: gated cross layers (2 in DTN).

    Shapes: (B, F, dim) -> (B, F * dim); ``output_dim = F * dim``.
    """

    def __init__(self, num_fields: int, dim: int, num_layers: int = 2) -> None:
        super().__init__()
        self.num_fields = _positive(num_fields, "num_fields", "GDCN")
        self.dim = _positive(dim, "dim", "GDCN")
        layers = _positive(num_layers, "num_layers", "GDCN")
        width = self.num_fields * self.dim
        self.cross = nn.ModuleList(nn.Linear(width, width) for _ in range(layers))
        self.gate = nn.ModuleList(nn.Linear(width, width, bias=False) for _ in range(layers))
        self.output_dim = width

    def forward(self, fields: torch.Tensor) -> torch.Tensor:
        _check_fields(fields, self.num_fields, self.dim, "GDCN")
        x0 = fields.flatten(1)
        x = x0
        for cross, gate in zip(self.cross, self.gate, strict=True):
            x = x0 * cross(x) * torch.sigmoid(gate(x)) + x
        return x


class MaskBlock(nn.Module):
    """One instance-guided mask block: ReLU(LN(W_o (mask(e) * LN(v)))), mask(e) = W_2 ReLU(W_1 e).

    Args:
        embedding_dim: width of e, the flattened field embeddings that guide the mask.
        input_dim: width of v, the block's input (e itself for the first block).
        aggregation_dim: hidden width of the mask's two-layer network (256 in DTN).
        output_dim: width of the block's output (the ffn size, 128 in DTN).

    Shapes: e (B, embedding_dim), v (B, input_dim) -> (B, output_dim).
    """

    last_mask: torch.Tensor | None

    def __init__(self, embedding_dim: int, input_dim: int, aggregation_dim: int, output_dim: int) -> None:
        super().__init__()
        self.mask = nn.Sequential(nn.Linear(embedding_dim, aggregation_dim), nn.ReLU(inplace=True),
                                  nn.Linear(aggregation_dim, input_dim))
        self.input_norm = nn.LayerNorm(input_dim)
        self.hidden = nn.Linear(input_dim, output_dim, bias=False)  # LayerNorm follows: a bias is redundant
        self.output_norm = nn.LayerNorm(output_dim)
        self.output_dim = int(output_dim)
        self.last_mask = None

    def forward(self, embedding: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        mask = self.mask(embedding)  # (B, input_dim)
        self.last_mask = mask.detach()
        return torch.relu(self.output_norm(self.hidden(mask * self.input_norm(value))))


class MaskNet(nn.Module):
    """Serial MaskNet: the first block masks the field embeddings, each next block masks the last output.

    Every mask is computed from the flattened field embeddings (the instance guidance).

    Args:
        num_fields: F.
        dim: width of each field.
        num_blocks: mask blocks in series (2 in DTN).
        ffn_dim: each block's output width (128 in DTN).
        aggregation_dim: hidden width of each mask network (256 in DTN).

    Shapes: (B, F, dim) -> (B, ffn_dim); after a forward, ``masks()`` gives each block's (B, width) mask.
    """

    def __init__(self, num_fields: int, dim: int, num_blocks: int = 2, ffn_dim: int = 128,
                 aggregation_dim: int = 256) -> None:
        super().__init__()
        self.num_fields = _positive(num_fields, "num_fields", "MaskNet")
        self.dim = _positive(dim, "dim", "MaskNet")
        blocks = _positive(num_blocks, "num_blocks", "MaskNet")
        ffn = _positive(ffn_dim, "ffn_dim", "MaskNet")
        aggregation = _positive(aggregation_dim, "aggregation_dim", "MaskNet")
        width = self.num_fields * self.dim
        self.blocks = nn.ModuleList(MaskBlock(width, width if index == 0 else ffn, aggregation, ffn)
                                    for index in range(blocks))
        self.output_dim = ffn

    def forward(self, fields: torch.Tensor) -> torch.Tensor:
        _check_fields(fields, self.num_fields, self.dim, "MaskNet")
        embedding = fields.flatten(1)
        value = embedding
        for block in self.blocks:
            value = block(embedding, value)
        return value

    def masks(self) -> list[torch.Tensor]:
        """Each block's mask of the last forward, detached: (B, block input width)."""
        masks = []
        for block in self.blocks:
            assert isinstance(block, MaskBlock)
            if block.last_mask is not None:
                masks.append(block.last_mask)
        return masks


class HashedCrossMemory(nn.Module):
    """MemoNet-style memory of field-pair crosses in a multi-hash codebook (order 2).

    Each of the P = F (F - 1) / 2 field pairs (i, j) with codes (a, b) reads ``num_hashes`` rows of one
    learned codebook, summed into a (dim,) cross embedding; the P cross embeddings and the fields are
    concatenated and projected to ``output_dim``. Codes come from SimHash of the field embeddings
    (module docstring), or from ``field_codes`` when given.

    Args:
        num_fields: F (at least 2).
        dim: width of each field and of each codebook row.
        num_rows: codebook rows.
        num_hashes: hashes per cross (2 in DTN).
        order: cross order; only 2 (pairs) is implemented, as in DTN's settings.
        code_bits: SimHash bits per field: codes lie in [0, 2^code_bits).
        output_dim: width of the output.
        seed: draws the SimHash projections and hash parameters (fixed buffers, not learned).

    Shapes: (B, F, dim) [and (B, F) int64 codes] -> (B, output_dim).
    """

    projections: torch.Tensor
    hash_a: torch.Tensor
    hash_b: torch.Tensor
    pair_i: torch.Tensor
    pair_j: torch.Tensor
    bit_weights: torch.Tensor

    def __init__(self, num_fields: int, dim: int, num_rows: int = 8192, num_hashes: int = 2, order: int = 2,
                 code_bits: int = 8, output_dim: int = 128, seed: int = 0) -> None:
        super().__init__()
        self.num_fields = _positive(num_fields, "num_fields", "HashedCrossMemory")
        self.dim = _positive(dim, "dim", "HashedCrossMemory")
        self.num_rows = _positive(num_rows, "num_rows", "HashedCrossMemory")
        self.num_hashes = _positive(num_hashes, "num_hashes", "HashedCrossMemory")
        self.code_bits = _positive(code_bits, "code_bits", "HashedCrossMemory")
        if self.num_fields < 2:
            raise ConfigError(f"a cross memory needs at least 2 fields, got {num_fields}",
                              where="HashedCrossMemory", fix="use a FeatureBlock with 2 or more fields")
        if order != 2:
            raise ConfigError(f"only order 2 (field pairs) is implemented, got {order}",
                              where="HashedCrossMemory(order)", fix="use order=2")
        pairs = list(itertools.combinations(range(self.num_fields), 2))
        if len(pairs) * (1 << (2 * self.code_bits)) >= _MAX_KEY:
            raise ConfigError(f"{len(pairs)} pairs x 2^{2 * self.code_bits} code pairs exceed the hash key space",
                              where="HashedCrossMemory(code_bits)", fix="use fewer code_bits (e.g. 8)")
        generator = torch.Generator().manual_seed(seed)
        self.register_buffer("projections", torch.randn(self.dim, self.code_bits, generator=generator))
        self.register_buffer("bit_weights", 2 ** torch.arange(self.code_bits))
        self.register_buffer("hash_a", torch.randint(1, _PRIME, (self.num_hashes,), generator=generator))
        self.register_buffer("hash_b", torch.randint(0, _PRIME, (self.num_hashes,), generator=generator))
        self.register_buffer("pair_i", torch.tensor([i for i, _ in pairs]))
        self.register_buffer("pair_j", torch.tensor([j for _, j in pairs]))
        self.codebook = nn.Embedding(self.num_rows, self.dim)
        nn.init.normal_(self.codebook.weight, std=0.05)
        self.num_pairs = len(pairs)
        self.output = nn.Linear((self.num_pairs + self.num_fields) * self.dim, _positive(output_dim, "output_dim",
                                                                                          "HashedCrossMemory"))
        self.output_dim = int(output_dim)

    def field_codes(self, fields: torch.Tensor) -> torch.Tensor:
        """(B, F, dim) -> (B, F) int64 SimHash codes in [0, 2^code_bits)."""
        bits = (fields.detach() @ self.projections) > 0  # (B, F, bits)
        return (bits.long() * self.bit_weights).sum(-1)

    def rows(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, F) codes -> (B, P, num_hashes) codebook rows of every field pair."""
        space = 1 << self.code_bits
        pair = torch.arange(self.num_pairs, device=codes.device)
        key = (pair * space + codes[:, self.pair_i] % space) * space + codes[:, self.pair_j] % space  # (B, P)
        return ((key.unsqueeze(-1) * self.hash_a + self.hash_b) % _PRIME) % self.num_rows

    def forward(self, fields: torch.Tensor, field_codes: torch.Tensor | None = None) -> torch.Tensor:
        _check_fields(fields, self.num_fields, self.dim, "HashedCrossMemory")
        codes = self.field_codes(fields) if field_codes is None else field_codes
        if codes.shape != fields.shape[:2]:
            raise ConfigError(f"field_codes has shape {tuple(codes.shape)}, expected {tuple(fields.shape[:2])}",
                              where="HashedCrossMemory", fix="pass one int64 code per field and row")
        crosses = self.codebook(self.rows(codes)).sum(dim=2)  # (B, P, dim)
        return self.output(torch.cat([crosses.flatten(1), fields.flatten(1)], dim=1))
