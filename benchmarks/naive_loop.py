"""The reference a researcher would write: one seed at a time, the way the papers' public code
trains (nn.Module, DataLoader with batch 32 and shuffling, torch.optim.Adam, train and test
evaluation every epoch). `bench_training.py` runs it beside testbed."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset


class RMSNorm(nn.Module):
    def forward(self, x):
        return x / (x.pow(2).mean(-1, keepdim=True).sqrt() + 1e-5)


class Transformer(nn.Module):
    def __init__(self, vocab: int, seq_len: int, d: int = 2, hidden: int = 32):
        super().__init__()
        self.d = d
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(seq_len, d)
        self.query = nn.Linear(d, 1, bias=False)
        self.value = nn.Linear(d, d, bias=False)
        self.fc1 = nn.Linear(d, hidden)
        self.fc2 = nn.Linear(hidden, d)
        self.norm1, self.norm2 = RMSNorm(), RMSNorm()

    def forward(self, x):
        z = self.norm1(self.tok(x) + self.pos.weight)
        attn = F.softmax(self.query.weight @ z.transpose(-1, -2) / math.sqrt(self.d), dim=-1)
        xi = (attn @ self.value(z)).squeeze(1)
        out = xi + self.fc2(F.gelu(self.fc1(self.norm2(xi))))
        return out @ self.tok.weight.T


def train_one_seed(seed: int, epochs: int, p: int = 2, L: int = 12, k: int = 5, n: int = 2048, lr: float = 3e-3, batch: int = 32):
    torch.manual_seed(seed)
    x_train = torch.randint(p, (n, L))
    x_test = torch.randint(p, (n, L))
    y_train, y_test = x_train[:, :k].sum(1) % p, x_test[:, :k].sum(1) % p
    model = Transformer(p, L)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loader = DataLoader(TensorDataset(x_train, y_train), batch_size=batch, shuffle=True)
    history = []
    for _ in range(epochs):
        model.train()
        for xb, yb in loader:
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            row = []
            for x, y in ((x_train, y_train), (x_test, y_test)):
                logits = model(x)
                row += [F.cross_entropy(logits, y).item(), (logits.argmax(1) == y).float().mean().item()]
            history.append(row)
    return history
