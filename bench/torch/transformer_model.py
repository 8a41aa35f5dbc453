"""The benchmark's large model: a stack of standard transformer encoder blocks (d_model 512,
8 heads, feed-forward 2048, the sizes of "Attention is all you need"'s base model) over a
token embedding, with a token-classification head; 26.2 M parameters. Its data are seeded
random tokens: throughput depends on the shapes, not on what the tokens say."""
import torch
import torch.nn as nn

VOCAB, D_MODEL, HEADS, FFN, LAYERS = 1000, 512, 8, 2048, 8


class TransformerStack(nn.Module):
    def __init__(self, layers=LAYERS):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, D_MODEL)
        block = dict(d_model=D_MODEL, nhead=HEADS, dim_feedforward=FFN, dropout=0.0,
                     batch_first=True, norm_first=True)
        self.blocks = nn.ModuleList(nn.TransformerEncoderLayer(**block) for _ in range(layers))
        self.norm = nn.LayerNorm(D_MODEL)
        self.head = nn.Linear(D_MODEL, VOCAB)

    def forward(self, tokens):
        x = self.embed(tokens)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x)).flatten(0, 1)  # one prediction per token


def batches(batch, seq_len, seed, count):
    """`count` (tokens, targets) pairs of `batch` sequences, the same on every rank for a
    seed (ranks add their rank to it for their own data)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        tokens = torch.randint(0, VOCAB, (batch, seq_len), generator=g)
        out.append((tokens, torch.roll(tokens, -1, dims=1).flatten()))
    return out
