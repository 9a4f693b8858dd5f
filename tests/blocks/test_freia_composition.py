"""Our blocks drop into FrEIA's SequenceINN and GraphINN."""

from __future__ import annotations

import torch
from FrEIA.framework import GraphINN, InputNode, Node, OutputNode, SequenceINN

from invprotect.blocks import DSACBlock, HaarDownsampling, HaarUpsampling, InvertibleUNet, get_block
from tests.contracts import train_away_from_identity
from tests.tolerances import round_trip_tolerance, summation_roundoff


def test_sequence_inn_of_our_blocks_round_trips() -> None:
    inn = SequenceINN(3, 16, 16)
    inn.append(HaarDownsampling)
    inn.append(get_block("dsac"), subnet="conv", hidden_channels=8)
    inn.append(DSACBlock, subnet="resnet_sn", hidden_channels=8, split_len=3)
    inn.append(HaarUpsampling)
    inn.append(InvertibleUNet, levels=1, blocks_per_level=1, hidden_channels=8)
    train_away_from_identity(inn, lambda: torch.rand(2, 3, 16, 16), forward=lambda x: inn(x)[0])
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        y, log_det = inn(x)
        x_back, log_det_rev = inn(y, rev=True)
    assert (y - x).abs().mean() > 0.05
    assert (x_back - x).abs().max() <= round_trip_tolerance(inn, torch.cat([x, y]))
    tolerance = summation_roundoff(log_det, x[0].numel())
    torch.testing.assert_close(log_det + log_det_rev, torch.zeros(2), atol=tolerance, rtol=0)


def test_graph_inn_of_our_blocks_round_trips() -> None:
    nodes = [InputNode(3, 8, 8, name="image")]
    nodes.append(Node(nodes[-1], HaarDownsampling, {}))
    nodes.append(Node(nodes[-1], DSACBlock, {"subnet": "conv", "hidden_channels": 8}))
    nodes.append(Node(nodes[-1], HaarUpsampling, {}))
    nodes.append(OutputNode(nodes[-1]))
    inn = GraphINN(nodes)
    x = torch.rand(2, 3, 8, 8)
    y, _ = inn(x)
    x_back, _ = inn(y, rev=True)
    torch.testing.assert_close(x_back, x, atol=round_trip_tolerance(inn, torch.cat([x, y])), rtol=0)
