"""A small GPT written by hand (after nanoGPT), with a KV cache and sequence log-probs.

Read top to bottom: `GPTConfig` -> `CausalSelfAttention` -> `MLP` -> `Block` -> `GPT`.
Attention has two paths that compute the same thing (a test checks they agree to 1e-5):
  - the explicit one, q·kᵀ/√d -> mask -> softmax -> ·v, the one to read;
  - `F.scaled_dot_product_attention`, the fast one, used by default.

`sequence_logps` is the one function DPO, the reward model's data and REINFORCE all use to get
log π(y|x): per-token log-probs of the response tokens (prompt and padding masked out), summed.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint


@dataclass
class GPTConfig:
    vocab_size: int = 593
    block_size: int = 64
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    attention: str = "sdpa"  # "sdpa" (fast) or "math" (explicit, for reading)
    gelu: str = "exact"      # "exact" (erf), or "tanh": GPT-2's gelu_new, needed for its weights
    checkpointing: bool = False  # recompute each block in the backward pass: less memory, ~1/3 more compute

    def to_dict(self) -> dict:
        return asdict(self)

    def validate(self) -> "GPTConfig":
        """Raise ValueError on a config no GPT can be built from (a hand-edited JSON, say)."""
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"{name} must be a positive integer, not {v!r}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), not {self.dropout!r}")
        if self.attention not in ("sdpa", "math"):
            raise ValueError(f"attention must be 'sdpa' or 'math', not {self.attention!r}")
        if self.gelu not in ("exact", "tanh"):
            raise ValueError(f"gelu must be 'exact' or 'tanh', not {self.gelu!r}")
        return self


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        assert cfg.n_embd % cfg.n_head == 0
        self.n_head, self.attention = cfg.n_head, cfg.attention
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd)   # q, k, v in one matmul
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.dropout = cfg.dropout

    def forward(self, x, mask=None, cache=None):
        """x: (B, T, C). mask: None (plain causal) or bool (B, 1, T, T_total), True = may attend.
        cache: None or a dict holding this layer's past keys/values, extended in place."""
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        if cache is not None:
            if "k" in cache:
                k = torch.cat([cache["k"], k], dim=2)  # (B, nh, T_past + T, hs)
                v = torch.cat([cache["v"], v], dim=2)
            cache["k"], cache["v"] = k, v
        if self.attention == "math":
            att = (q @ k.transpose(-2, -1)) / math.sqrt(k.size(-1))  # (B, nh, T, T_total)
            if mask is None:
                causal = torch.ones(T, k.size(2), dtype=torch.bool, device=x.device).tril(k.size(2) - T)
                att = att.masked_fill(~causal, float("-inf"))
            else:
                att = att.masked_fill(~mask, float("-inf"))
            att = F.softmax(att, dim=-1)
            att = F.dropout(att, self.dropout, self.training)
            y = att @ v  # (B, nh, T, hs)
        else:
            drop = self.dropout if self.training else 0.0
            if mask is None:
                y = F.scaled_dot_product_attention(q, k, v, dropout_p=drop, is_causal=True)
            else:
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C): heads side by side again
        return F.dropout(self.c_proj(y), self.dropout, self.training)


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd)
        self.c_proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd)
        self.dropout = cfg.dropout
        self.approximate = "tanh" if cfg.gelu == "tanh" else "none"

    def forward(self, x):
        return F.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate=self.approximate)), self.dropout, self.training)


class Block(nn.Module):
    """Pre-LayerNorm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln_1, self.attn = nn.LayerNorm(cfg.n_embd), CausalSelfAttention(cfg)
        self.ln_2, self.mlp = nn.LayerNorm(cfg.n_embd), MLP(cfg)

    def forward(self, x, mask=None, cache=None):
        x = x + self.attn(self.ln_1(x), mask, cache)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.config = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # weight tying: one matrix reads and writes tokens
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2: residual projections scaled by 1/sqrt(2L)
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init_weights(m):
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())  # tied weights are counted once

    def hidden(self, idx, pos=None, mask=None, caches=None):
        """Final hidden states (B, T, C). pos: position ids (B, T), default 0..T-1."""
        B, T = idx.shape
        if pos is None:
            if T > self.config.block_size:
                raise ValueError(f"sequence of {T} tokens is longer than block_size={self.config.block_size}")
            pos = torch.arange(T, device=idx.device).unsqueeze(0)
        x = self.wte(idx) + self.wpe(pos)
        for i, block in enumerate(self.blocks):
            if self.config.checkpointing and self.training and caches is None and torch.is_grad_enabled():
                x = torch.utils.checkpoint.checkpoint(block, x, mask, use_reentrant=False)
            else:
                x = block(x, mask, None if caches is None else caches[i])
        return self.ln_f(x)

    def forward(self, idx, targets=None, pos=None, mask=None, caches=None):
        """logits (B, T, V); with targets (B, T) (-100 = ignore) also the mean cross-entropy."""
        logits = self.lm_head(self.hidden(idx, pos, mask, caches))
        if targets is None:
            return logits
        loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-100)
        return logits, loss

    @torch.no_grad()
    def generate(self, prompts: list[list[int]], max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, stop_id: int | None = None, generator=None,
                 use_cache: bool = True) -> list[list[int]]:
        """Sample continuations for a batch of prompts of different lengths.

        Prompts are left-padded; each row gets its own position ids (its first real token is at
        position 0) and a key mask that hides the padding, so a row's result does not depend on
        the other rows. temperature=0 means greedy. Returns each row's new tokens, up to and
        including `stop_id` if it was produced."""
        device = self.wte.weight.device
        B, P = len(prompts), max(len(p) for p in prompts)
        if P + max_new_tokens > self.config.block_size:
            raise ValueError(f"prompt ({P} tokens) + max_new_tokens ({max_new_tokens}) exceeds "
                             f"block_size={self.config.block_size}")
        idx = torch.zeros(B, P, dtype=torch.long, device=device)
        valid = torch.zeros(B, P, dtype=torch.bool, device=device)
        for i, p in enumerate(prompts):
            idx[i, P - len(p):] = torch.tensor(p, device=device)
            valid[i, P - len(p):] = True
        out = torch.zeros(B, 0, dtype=torch.long, device=device)
        done = torch.zeros(B, dtype=torch.bool, device=device)
        caches = [dict() for _ in self.blocks] if use_cache else None
        step_idx = idx
        for _ in range(max_new_tokens):
            pos_all = (valid.long().cumsum(1) - 1).clamp(min=0)      # (B, T_total)
            T_total, T = valid.size(1), step_idx.size(1)
            causal = torch.ones(T, T_total, dtype=torch.bool, device=device).tril(T_total - T)
            # a query may attend valid keys before it, and always itself (so padding rows stay finite)
            itself = torch.eye(T_total, dtype=torch.bool, device=device)[-T:]
            mask = ((causal & valid.unsqueeze(1)) | itself).unsqueeze(1)  # (B, 1, T, T_total)
            logits = self(step_idx, pos=pos_all[:, -T:], mask=mask, caches=caches)[:, -1, :].float()
            if not bool(torch.isfinite(logits).all()):
                raise FloatingPointError("the model's next-token logits are not finite (its weights or "
                                         "activations overflowed), so nothing can be sampled from it")
            if temperature == 0:
                nxt = logits.argmax(-1)
            else:
                logits = logits / temperature
                if top_k is not None:
                    kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, -1:]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                nxt = torch.multinomial(F.softmax(logits, -1), 1, generator=generator).squeeze(1)
            if stop_id is not None:
                nxt = torch.where(done, torch.full_like(nxt, stop_id), nxt)
                done |= nxt == stop_id
            out = torch.cat([out, nxt[:, None]], 1)
            valid = torch.cat([valid, torch.ones(B, 1, dtype=torch.bool, device=device)], 1)
            idx = torch.cat([idx, nxt[:, None]], 1)
            step_idx = nxt[:, None] if use_cache else idx
            if stop_id is not None and bool(done.all()):
                break
        rows = out.tolist()
        if stop_id is None:
            return rows
        return [r[:r.index(stop_id) + 1] if stop_id in r else r for r in rows]


@dataclass
class ResponseLogps:
    """What `sequence_logps` measures about each row's response (B rows, T-1 next-token positions)."""
    token_logps: torch.Tensor           # (B, T-1) log π(y_t | x, y_<t) at response positions, 0 elsewhere
    logps: torch.Tensor                 # (B,) their sum: log π(y|x) (the mean with average=True)
    lengths: torch.Tensor               # (B,) number of response tokens
    entropy: torch.Tensor | None = None  # (B, T-1) entropy of π at response positions (with_entropy=True)


def sequence_logps(model, input_ids, response_mask, average: bool = False,
                   with_entropy: bool = False) -> ResponseLogps:
    """log π(y|x) of each row's response, and its per-token terms (see `ResponseLogps`).

    input_ids: (B, T) token ids [prompt, response, padding]; response_mask: (B, T) bool, True on
    response tokens (the <|end|> token included). Token t is predicted from logits at t-1, so the
    mask is shifted by one. Prompt and padding positions contribute exactly 0.
    average=False (default, as in the DPO paper) sums over response tokens; average=True divides
    by the number of response tokens (a per-token scale, so β must be ~length times larger)."""
    logits = model(input_ids[:, :-1])
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()  # log-softmax in fp32 under autocast; float64 stays float64
    targets = input_ids[:, 1:]
    mask = response_mask[:, 1:]
    all_logps = F.log_softmax(logits, -1)
    token_logps = torch.gather(all_logps, 2, targets.unsqueeze(-1)).squeeze(-1) * mask
    lengths = mask.sum(-1)
    seq = token_logps.sum(-1)
    if average:
        seq = seq / lengths.clamp(min=1)
    entropy = -(all_logps.exp() * all_logps).sum(-1) * mask if with_entropy else None
    return ResponseLogps(token_logps, seq, lengths, entropy)
