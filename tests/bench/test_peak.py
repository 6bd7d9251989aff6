"""The CPU peak the benchmarks and the per-layer report hold achieved rates against (lenet_edge.bench.peak)."""

from __future__ import annotations

import pytest

from lenet_edge.bench.peak import AVX2_INT8_MACS_PER_CYCLE, Peak, cpu_peak, int8_macs_per_cycle


@pytest.mark.parametrize("flags, macs", [
    ({"avx2", "fma"}, 32),  # VPMADDUBSW + VPMADDWD per 32 products on two multiply pipes: not 2 x 32 = 64
    ({"avx2", "fma", "avx_vnni"}, 64),  # two VPDPBUSD x 8 lanes x 4
    ({"avx2", "fma", "avx512f", "avx512_vnni"}, 128),  # two VPDPBUSD x 16 lanes x 4
    ({"sse4_2"}, None),
])
def test_int8_macs_per_cycle_follow_the_instructions_the_cpu_has(flags, macs):
    found, basis = int8_macs_per_cycle(flags)
    assert found == macs and basis
    if flags == {"avx2", "fma"}:
        assert found == AVX2_INT8_MACS_PER_CYCLE and "VPMADDUBSW + VPMADDWD" in basis


def test_this_cpus_peak_states_its_basis():
    peak = cpu_peak(1)
    assert isinstance(peak, Peak) and "core(s)" in peak.basis or "clock unknown" in peak.basis
    assert peak["basis"] == peak.basis and peak["int8"] == peak.int8
    if peak.fp32 is not None and peak.int8 is not None:
        assert peak.int8 >= 2 * peak.fp32  # int8 at least twice fp32 on every x86 this counts
    with pytest.raises(KeyError):
        peak["int4"]
