"""DTN: task-specific feature-interaction blocks, two-softmax gates and a task-sensitive network.

After Bi et al., *DTN* (arXiv 2408.11611), with the settings of its published code:

- **Blocks.** One block per task plus one shared block; each block holds one module of each
  feature-interaction method (``sidkit.ranking.interactions``: GDCN, MaskNet, MemoNet), every module
  projected to ``module_dim`` so that modules can be mixed. MemoNet reads the impression's discrete
  values (``FeatureBlock.discrete_fields``); ``DTNConfig.memory="simhash"`` swaps in the SimHash
  cross memory instead.
- **Gates.** Per task, a score per module (a dense layer to 1 on the module's output); one softmax over
  the task's own modules, another over the shared and the other tasks' modules. The task input is
  the concatenation of the two weighted sums: (B, 2 * module_dim).
- **Task-sensitive network.** For each chain link ``downstream:upstream`` (e.g. ``like:click``), the
  upstream task's module outputs are multiplied by its prediction, gradient stopped, before the
  downstream task's gate sees them. So the downstream loss never trains the upstream tower through
  that product; upstream modules still learn from it, as in the paper.
- **Towers** 128-64 per task, one logit each.

``last_gates`` holds ``{task}/own`` (B, M) and ``{task}/other`` (B, (K - 1) * M + M) weights, where M
is the number of modules per block; the order of the other pool is the shared block, then the other
tasks in ``model.tasks`` order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from sidkit.errors import ConfigError
from sidkit.ranking.interactions import GDCN, MaskNet, MemoNet, SimHashCrossMemory
from sidkit.ranking.layers import FeatureBlock, TaskTowers
from sidkit.ranking.models import ModelConfig, MultiTaskRanker, register_model

#: The feature-interaction methods of every block, in module order.
MODULES: tuple[str, ...] = ("gdcn", "masknet", "memonet")


def parse_chain(links: Sequence[str] | str) -> tuple[tuple[str, str], ...]:
    """``"like:click,cvr:like"`` or ``["like:click"]`` -> ((downstream, upstream), ...)."""
    if isinstance(links, str):
        links = [part for part in links.split(",") if part.strip()]
    parsed = []
    for link in links:
        parts = [p.strip() for p in link.split(":")]
        if len(parts) != 2 or not all(parts) or parts[0] == parts[1]:
            raise ConfigError(f"bad task chain link {link!r}", where="DTNConfig.chain",
                              fix="write 'downstream:upstream', e.g. 'like:click'")
        parsed.append((parts[0], parts[1]))
    return tuple(parsed)


@dataclass(frozen=True)
class DTNConfig:
    """DTN's own architecture (dropout, activation and embeddings come from ``ModelConfig``).

    Attributes:
        module_dim: width every module is projected to (the gates mix modules of this width).
        gdcn_layers: gated cross layers.
        masknet_blocks: serial mask blocks.
        masknet_ffn: mask block output width.
        masknet_aggregation: hidden width of each mask network.
        memory: ``memonet`` (MemoNet's hash codebook network over discrete values) or ``simhash``
            (the SimHash cross memory over continuous fields).
        memory_rows: codebook rows of each memory.
        memory_hashes: hashes per field cross.
        memory_order: cross order (2).
        memory_code_bits: SimHash bits of each field's code (``simhash`` only).
        memory_history_items: latest history items whose tokens are MemoNet fields.
        memory_key_fields: ``candidate`` (default): MemoNet crosses only pairs with a candidate token
            slot (its key interaction fields: candidate x user, candidate x history item, candidate
            token x candidate token), about half the pairs of ``all``.
        memory_restoring, memory_shrinking: MemoNet's ``linear`` / ``attentive`` restoring and
            ``attentive`` / ``sum`` shrinking.
        tower_dims: hidden layers of each task tower.
        chain: ``downstream:upstream`` links of the task-sensitive network; links naming a task the
            model does not have are skipped, so the default suits ("click",) and ("click", "like").
    """

    module_dim: int = 128
    gdcn_layers: int = 2
    masknet_blocks: int = 2
    masknet_ffn: int = 128
    masknet_aggregation: int = 256
    memory: str = "memonet"
    memory_rows: int = 8192
    memory_hashes: int = 2
    memory_order: int = 2
    memory_code_bits: int = 8
    memory_history_items: int = 1
    memory_key_fields: str = "candidate"
    memory_restoring: str = "linear"
    memory_shrinking: str = "attentive"
    tower_dims: tuple[int, ...] = (128, 64)
    chain: tuple[str, ...] = ("like:click",)

    def __post_init__(self) -> None:
        for name in ("module_dim", "gdcn_layers", "masknet_blocks", "masknet_ffn", "masknet_aggregation",
                     "memory_rows", "memory_hashes", "memory_code_bits"):
            if int(getattr(self, name)) <= 0:
                raise ConfigError(f"{name} must be a positive integer, got {getattr(self, name)}",
                                  where=f"DTNConfig.{name}")
        if self.memory not in ("memonet", "simhash"):
            raise ConfigError(f"unknown memory {self.memory!r}", where="DTNConfig.memory",
                              fix="use 'memonet' or 'simhash'")
        if self.memory_order != 2:
            raise ConfigError(f"only order 2 (field pairs) is implemented, got {self.memory_order}",
                              where="DTNConfig.memory_order", fix="use 2")
        if self.memory_key_fields not in ("candidate", "all"):
            raise ConfigError(f"unknown memory key fields {self.memory_key_fields!r}",
                              where="DTNConfig.memory_key_fields", fix="use 'candidate' or 'all'")
        if int(self.memory_history_items) < 0:
            raise ConfigError("memory_history_items must be >= 0", where="DTNConfig.memory_history_items")
        object.__setattr__(self, "tower_dims", tuple(int(d) for d in self.tower_dims))
        chain = (self.chain,) if isinstance(self.chain, str) else tuple(self.chain)
        object.__setattr__(self, "chain", tuple(f"{d}:{u}" for d, u in parse_chain(chain)))


def _chain_order(tasks: tuple[str, ...], links: tuple[tuple[str, str], ...]) -> tuple[list[int], dict[int, int]]:
    """Task indices in an order where every upstream precedes its downstream, and downstream -> upstream."""
    upstream: dict[int, int] = {}
    for down, up in links:
        if down not in tasks or up not in tasks:
            continue
        d, u = tasks.index(down), tasks.index(up)
        if d in upstream:
            raise ConfigError(f"task {down!r} has two upstream tasks", where="DTNConfig.chain",
                              fix="give each downstream task one upstream task")
        upstream[d] = u
    order: list[int] = []
    visiting: set[int] = set()

    def visit(k: int) -> None:
        if k in order:
            return
        if k in visiting:
            raise ConfigError(f"the task chain has a cycle through {tasks[k]!r}", where="DTNConfig.chain",
                              fix="make the chain a tree, e.g. 'like:click'")
        visiting.add(k)
        if k in upstream:
            visit(upstream[k])
        order.append(k)

    for k in range(len(tasks)):
        visit(k)
    return order, upstream


class FeatureInteractionBlock(nn.Module):
    """One module of each method over the same inputs -> (B, M, module_dim).

    GDCN and MaskNet read the (B, F, dim) fields; the memory reads the discrete values (MemoNet) or
    the fields (SimHash).
    """

    def __init__(self, num_fields: int, dim: int, config: DTNConfig, seed: int, num_values: int = 0,
                 key_fields: Sequence[int] | None = None) -> None:
        super().__init__()
        gdcn = GDCN(num_fields, dim, config.gdcn_layers)
        masknet = MaskNet(num_fields, dim, config.masknet_blocks, config.masknet_ffn, config.masknet_aggregation)
        memory: nn.Module
        if config.memory == "memonet":
            memory = MemoNet(num_values, dim, config.memory_rows, config.memory_hashes,
                             restoring=config.memory_restoring, shrinking=config.memory_shrinking,
                             output_dim=config.module_dim, seed=seed, key_fields=key_fields)
        else:
            memory = SimHashCrossMemory(num_fields, dim, config.memory_rows, config.memory_hashes, config.memory_order,
                                        config.memory_code_bits, config.module_dim, seed=seed)
        self.uses_values = config.memory == "memonet"
        self.methods = nn.ModuleList([gdcn, masknet, memory])
        self.projections = nn.ModuleList(
            nn.Identity() if m.output_dim == config.module_dim else nn.Linear(int(m.output_dim), config.module_dim)
            for m in (gdcn, masknet, memory))

    def forward(self, fields: torch.Tensor, values: torch.Tensor | None = None,
                value_embeddings: torch.Tensor | None = None) -> torch.Tensor:
        gdcn, masknet, memory = self.methods
        outputs = [gdcn(fields), masknet(fields)]
        if self.uses_values:
            assert values is not None and value_embeddings is not None
            outputs.append(memory(values, value_embeddings))
        else:
            outputs.append(memory(fields))
        return torch.stack([proj(out) for out, proj in zip(outputs, self.projections, strict=True)], dim=1)


class ModuleGate(nn.Module):
    """A score per module (a dense layer to 1, one per module slot), softmax over the slots.

    (B, M, D) module outputs -> (B, M) weights summing to 1 per row.
    """

    def __init__(self, num_modules: int, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_modules, dim))
        self.bias = nn.Parameter(torch.zeros(num_modules))
        nn.init.normal_(self.weight, std=dim ** -0.5)

    def forward(self, modules: torch.Tensor) -> torch.Tensor:
        return torch.softmax((modules * self.weight).sum(-1) + self.bias, dim=-1)


class DTN(MultiTaskRanker):
    """Deep multiple task-specific feature-interaction network (module docstring).

    Args:
        features: the shared input layer; its ``fields`` output feeds every block.
        tasks: task names.
        config: dropout, activation and batch norm of the towers.
        dtn: DTN's own settings.
    """

    def __init__(self, features: FeatureBlock, tasks: Sequence[str], config: ModelConfig,
                 dtn: DTNConfig | None = None) -> None:
        super().__init__(features, tasks)
        dtn = dtn or DTNConfig()
        self.config = dtn
        self.order, self.upstream = _chain_order(self.tasks, parse_chain(dtn.chain))
        count = len(MODULES)
        # Block k serves task k; the last block is shared.
        self.history_items = int(dtn.memory_history_items)
        num_values = features.num_discrete_fields(features.users.num_fields, self.history_items)
        key_fields = None
        if dtn.memory_key_fields == "candidate":  # discrete_fields puts the candidate's slots after the user's
            users, slots = features.users.num_fields, int(features.items.tokens.shape[1])
            key_fields = list(range(users, users + slots))
        self.blocks = nn.ModuleList(FeatureInteractionBlock(features.num_fields, features.dim, dtn,
                                                            seed=config.seed + index, num_values=num_values,
                                                            key_fields=key_fields)
                                    for index in range(self.num_tasks + 1))
        self.own_gates = nn.ModuleList(ModuleGate(count, dtn.module_dim) for _ in self.tasks)
        self.other_gates = nn.ModuleList(ModuleGate(count * self.num_tasks, dtn.module_dim) for _ in self.tasks)
        self.towers = TaskTowers(2 * dtn.module_dim, self.num_tasks, dtn.tower_dims, config.dropout,
                                 config.activation, config.batch_norm)

    def forward(self, item: torch.Tensor, user_features: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        fields = self.features.fields(item, user_features, history)  # (B, F, dim)
        values = value_embeddings = None
        if self.config.memory == "memonet":
            if user_features.shape[1] != self.features.users.num_fields:
                raise ConfigError(f"user_features has {user_features.shape[1]} columns, but the model was built for "
                                  f"{self.features.users.num_fields}", where="DTN (MemoNet fields)",
                                  fix="build_model(..., num_user_fields=data.train.user_features.shape[1])")
            values, value_embeddings = self.features.discrete_fields(item, user_features, history,
                                                                     history_items=self.history_items)
        outputs = [block(fields, values, value_embeddings) for block in self.blocks]  # (K + 1) x (B, M, D)
        logits: list[torch.Tensor | None] = [None] * self.num_tasks
        gates: dict[str, torch.Tensor] = {}
        towers = self.towers.towers
        for k in self.order:
            others = [outputs[-1]]
            for j in range(self.num_tasks):
                if j == k:
                    continue
                if self.upstream.get(k) == j:
                    upstream_logit = logits[j]
                    assert upstream_logit is not None  # the order puts upstream tasks first
                    # Stop-gradient: the downstream loss must not train the upstream tower through here.
                    others.append(outputs[j] * torch.sigmoid(upstream_logit.detach()).unsqueeze(-1))
                else:
                    others.append(outputs[j])
            other = torch.cat(others, dim=1)  # (B, K * M, D)
            own_weight = self.own_gates[k](outputs[k])
            other_weight = self.other_gates[k](other)
            gates[f"{self.tasks[k]}/own"] = own_weight.detach()
            gates[f"{self.tasks[k]}/other"] = other_weight.detach()
            task_input = torch.cat([(own_weight.unsqueeze(-1) * outputs[k]).sum(1),
                                    (other_weight.unsqueeze(-1) * other).sum(1)], dim=1)
            logits[k] = towers[k](task_input)
        self.last_gates = gates
        return torch.cat([logit for logit in logits if logit is not None], dim=1)


def build_dtn(features: FeatureBlock, tasks: tuple[str, ...], config: ModelConfig) -> DTN:
    """The registered ``dtn`` builder: DTN with the default :class:`DTNConfig`."""
    return DTN(features, tasks, config)


register_model("dtn", build_dtn)
