"""Feature-interaction layers: GDCN, MaskNet, MemoNet's hash codebook network, and a SimHash cross memory.

GDCN, MaskNet and SimHashCrossMemory take the (B, F, dim) output of ``FeatureBlock.fields`` (F fields of
width dim) and return (B, output_dim). They follow the settings of DTN's published code (Bi et al.,
arXiv 2408.11611): GDCN with 2 gated cross layers, MaskNet with 2 serial mask blocks (ffn 128,
aggregation 256), and a memory of field-pair crosses with 2 hashes, order 2.

**MemoNet** (Fang et al., CIKM 2022: the hash codebook network, HCNet) memorizes *discrete cross
features*: every pair of fields (i, j) with values (a, b) is a cross feature id; ``num_hashes``
universal hashes of (i, j, a, b) address rows of one shared codebook (multi-hash addressing: two
crosses that collide in one hash rarely collide in all); the addressed codewords are restored into
one embedding per cross (linear memory restoring: the concatenated codewords through a linear map;
attentive restoring first reweights each codeword by a gate on the two fields' embeddings); and
feature shrinking sums each field's crosses into one vector per field, weighted by a gate on all
field embeddings (global attentive shrinking). It takes ``FeatureBlock.discrete_fields``: user-feature
columns and the token slots of the candidate and of the latest history item. With Semantic-ID
tokens, a cross such as (user, first SID prefix) is shared by every item of that prefix, new items
included; a hashed item id's crosses are its own. Addresses are fixed functions of the ids.

**SimHashCrossMemory** is not MemoNet: it has no discrete ids. Each continuous field embedding gets a
code from SimHash (the signs of ``code_bits`` fixed random projections), the codes of a field pair
are hashed into a codebook and the rows summed, with no restoring. Its addresses move as the
embeddings learn (most items change address within an epoch), so it memorizes regions of embedding
space rather than crosses. It is kept under its own name for comparison.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

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


class SimHashCrossMemory(nn.Module):
    """A codebook of SimHash codes of field-pair embeddings (order 2): not MemoNet (module docstring).

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
        self.num_fields = _positive(num_fields, "num_fields", "SimHashCrossMemory")
        self.dim = _positive(dim, "dim", "SimHashCrossMemory")
        self.num_rows = _positive(num_rows, "num_rows", "SimHashCrossMemory")
        self.num_hashes = _positive(num_hashes, "num_hashes", "SimHashCrossMemory")
        self.code_bits = _positive(code_bits, "code_bits", "SimHashCrossMemory")
        if self.num_fields < 2:
            raise ConfigError(f"a cross memory needs at least 2 fields, got {num_fields}",
                              where="SimHashCrossMemory", fix="use a FeatureBlock with 2 or more fields")
        if order != 2:
            raise ConfigError(f"only order 2 (field pairs) is implemented, got {order}",
                              where="SimHashCrossMemory(order)", fix="use order=2")
        pairs = list(itertools.combinations(range(self.num_fields), 2))
        if len(pairs) * (1 << (2 * self.code_bits)) >= _MAX_KEY:
            raise ConfigError(f"{len(pairs)} pairs x 2^{2 * self.code_bits} code pairs exceed the hash key space",
                              where="SimHashCrossMemory(code_bits)", fix="use fewer code_bits (e.g. 8)")
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
                                                                                          "SimHashCrossMemory"))
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
        _check_fields(fields, self.num_fields, self.dim, "SimHashCrossMemory")
        codes = self.field_codes(fields) if field_codes is None else field_codes
        if codes.shape != fields.shape[:2]:
            raise ConfigError(f"field_codes has shape {tuple(codes.shape)}, expected {tuple(fields.shape[:2])}",
                              where="SimHashCrossMemory", fix="pass one int64 code per field and row")
        crosses = self.codebook(self.rows(codes)).sum(dim=2)  # (B, P, dim)
        return self.output(torch.cat([crosses.flatten(1), fields.flatten(1)], dim=1))


class MemoNet(nn.Module):
    """MemoNet's hash codebook network over discrete field values (module docstring), order 2.

    Args:
        num_fields: V, the discrete fields (at least 2).
        dim: width of each field embedding.
        num_rows: codewords in the shared codebook.
        num_hashes: hash functions per cross (multi-hash addressing; 2 in DTN).
        codeword_dim: width of a codeword (``dim`` by default).
        restoring: ``linear`` (LMR) or ``attentive`` (AMR).
        shrinking: ``attentive`` (GAS: a gate on all field embeddings weighs each cross) or ``sum``.
        output_dim: width of the output, a projection of the shrunk crosses and the field embeddings.
        seed: draws the hash functions (fixed buffers, not learned).
        key_fields: MemoNet's key interaction fields: only pairs with at least one of these fields are
            crossed (None: every pair, the full HCNet).

    Shapes: values (B, V) int64 (0 = no value) and embeddings (B, V, dim) -> (B, output_dim).
    ``last_addresses`` holds the (B, P, num_hashes) codebook rows of the last forward.
    """

    hash_a: torch.Tensor
    hash_b: torch.Tensor
    hash_c: torch.Tensor
    pair_i: torch.Tensor
    pair_j: torch.Tensor
    membership: torch.Tensor

    def __init__(self, num_fields: int, dim: int, num_rows: int = 8192, num_hashes: int = 2,
                 codeword_dim: int | None = None, restoring: str = "linear", shrinking: str = "attentive",
                 output_dim: int = 128, seed: int = 0, key_fields: Sequence[int] | None = None) -> None:
        super().__init__()
        self.num_fields = _positive(num_fields, "num_fields", "MemoNet")
        self.dim = _positive(dim, "dim", "MemoNet")
        self.num_rows = _positive(num_rows, "num_rows", "MemoNet")
        self.num_hashes = _positive(num_hashes, "num_hashes", "MemoNet")
        self.codeword_dim = _positive(codeword_dim if codeword_dim is not None else dim, "codeword_dim", "MemoNet")
        if self.num_fields < 2:
            raise ConfigError(f"MemoNet crosses pairs of fields and needs at least 2, got {num_fields}",
                              where="MemoNet", fix="give it 2 or more discrete fields")
        if restoring not in ("linear", "attentive"):
            raise ConfigError(f"unknown memory restoring {restoring!r}", where="MemoNet(restoring)",
                              fix="use 'linear' or 'attentive'")
        if shrinking not in ("attentive", "sum"):
            raise ConfigError(f"unknown feature shrinking {shrinking!r}", where="MemoNet(shrinking)",
                              fix="use 'attentive' or 'sum'")
        self.restoring, self.shrinking = restoring, shrinking
        pairs = list(itertools.combinations(range(self.num_fields), 2))
        if key_fields is not None:
            keys = {int(k) for k in key_fields}
            if not keys or not keys <= set(range(self.num_fields)):
                raise ConfigError(f"key fields {sorted(keys)} must be among the {self.num_fields} fields",
                                  where="MemoNet(key_fields)", fix="give field indices in [0, num_fields)")
            pairs = [(i, j) for i, j in pairs if i in keys or j in keys]
        self.num_pairs = len(pairs)
        generator = torch.Generator().manual_seed(seed)
        for name in ("hash_a", "hash_b", "hash_c"):
            self.register_buffer(name, torch.randint(1, _PRIME, (self.num_hashes,), generator=generator))
        self.register_buffer("pair_i", torch.tensor([i for i, _ in pairs]))
        self.register_buffer("pair_j", torch.tensor([j for _, j in pairs]))
        membership = torch.zeros(self.num_fields, self.num_pairs)
        for p, (i, j) in enumerate(pairs):
            membership[i, p] = membership[j, p] = 1.0
        self.register_buffer("membership", membership)  # (V, P): which crosses each field shrinks
        self.codebook = nn.Embedding(self.num_rows, self.codeword_dim)
        nn.init.normal_(self.codebook.weight, std=0.05)
        width = self.num_hashes * self.codeword_dim
        self.restore = nn.Linear(width, self.dim, bias=False)  # memory restoring: codewords -> cross embedding
        self.restore_gate = nn.Linear(2 * self.dim, width) if restoring == "attentive" else None
        self.shrink_gate = nn.Linear(self.num_fields * self.dim, self.num_pairs) if shrinking == "attentive" else None
        self.output = nn.Linear(2 * self.num_fields * self.dim, _positive(output_dim, "output_dim", "MemoNet"))
        self.output_dim = int(output_dim)
        self.last_addresses: torch.Tensor | None = None

    def addresses(self, values: torch.Tensor) -> torch.Tensor:
        """(B, V) values -> (B, P, num_hashes) codebook rows of every field pair's cross id.

        A polynomial hash modulo the Mersenne prime 2^31 - 1 of (pair, value i, value j), one per
        (a, b, c): every intermediate stays below 2^63.
        """
        pair = torch.arange(self.num_pairs, device=values.device)
        a, b = values[:, self.pair_i] % _PRIME, values[:, self.pair_j] % _PRIME  # (B, P)
        h = (self.hash_a * (pair + 1).unsqueeze(-1) + self.hash_b) % _PRIME  # (P, hashes)
        h = (h.unsqueeze(0) * self.hash_c + a.unsqueeze(-1) + 1) % _PRIME
        h = (h * self.hash_c + b.unsqueeze(-1) + 1) % _PRIME
        return h % self.num_rows

    def forward(self, values: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
        if values.ndim != 2 or values.shape[1] != self.num_fields:
            raise ConfigError(f"expected values of shape (B, {self.num_fields}), got {tuple(values.shape)}",
                              where="MemoNet", fix="pass FeatureBlock.discrete_fields output")
        _check_fields(embeddings, self.num_fields, self.dim, "MemoNet")
        rows = self.addresses(values)
        self.last_addresses = rows.detach()
        batch = values.shape[0]
        if self.restore_gate is not None:  # attentive restoring: the pair's embeddings weigh each codeword
            codewords = self.codebook(rows)  # (B, P, hashes, codeword_dim)
            pair_embeddings = torch.cat([embeddings[:, self.pair_i], embeddings[:, self.pair_j]], dim=-1)
            codewords = codewords * self.restore_gate(pair_embeddings).view_as(codewords)
            crosses = self.restore(codewords.reshape(batch, self.num_pairs, -1))  # (B, P, dim)
        else:
            # Linear restoring W [c_1; ...; c_m] = sum_k W_k c_k: project the codebook once per hash
            # (R x dim each) and sum the addressed rows in one bag, instead of B * P concatenations
            # through the linear map; the same function, several times cheaper forward and backward.
            weight = self.restore.weight.view(self.dim, self.num_hashes, self.codeword_dim)
            projected = torch.einsum("rc,dkc->krd", self.codebook.weight, weight).reshape(-1, self.dim)
            offsets = torch.arange(self.num_hashes, device=rows.device) * self.num_rows
            # A gather and a sum, not embedding_bag: index_select's backward (index_add) skips the sort.
            picked = projected.index_select(0, (rows + offsets).reshape(-1))
            crosses = picked.view(batch, self.num_pairs, self.num_hashes, self.dim).sum(dim=2)
        # One weight per cross: 0 when a value is missing (no cross), times the shrinking gate.
        weight = ((values[:, self.pair_i] != 0) & (values[:, self.pair_j] != 0)).to(crosses.dtype)
        if self.shrink_gate is not None:  # global attentive shrinking: a weight per cross
            weight = weight * self.shrink_gate(embeddings.flatten(1))
        shrunk = torch.matmul(self.membership, crosses * weight.unsqueeze(-1))  # (B, V, dim): each field's crosses
        return self.output(torch.cat([shrunk.flatten(1), embeddings.flatten(1)], dim=1))
