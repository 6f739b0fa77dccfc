"""``precision=auto``: bfloat16 autocast only where the CPU computes bfloat16 natively (never assumed)."""
import torch

from torchrl_rgm.config import cpu_has_native_bf16, resolve_precision

AVX2_EPYC = "processor\t: 0\nmodel name\t: AMD EPYC 7B12\nflags\t\t: fpu sse sse2 avx avx2 fma bmi2\n"
XEON_BF16 = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512bw avx512_vnni avx512_bf16\n"
SAPPHIRE = "processor\t: 0\nflags\t\t: fpu avx2 avx512f amx_tile amx_bf16 amx_int8\n"


def test_native_bf16_is_read_from_the_cpu_flags():
    assert not cpu_has_native_bf16(AVX2_EPYC)  # where bf16 autocast ran 20x slower than float32
    assert cpu_has_native_bf16(XEON_BF16) and cpu_has_native_bf16(SAPPHIRE)
    assert not cpu_has_native_bf16("")  # flags unreadable: none assumed
    assert not cpu_has_native_bf16("flags\t: avx512f avx512bw\n")  # AVX-512 without its BF16 extension


def test_auto_resolves_per_device_and_explicit_choices_stand():
    native = cpu_has_native_bf16()
    assert resolve_precision("auto", "cpu") == ("bfloat16" if native else "float32")
    assert resolve_precision("auto", torch.device("cuda", 0)) == "float32"  # not measured faster on CUDA
    assert resolve_precision("float32", "cpu") == "float32" and resolve_precision("bfloat16", "cpu") == "bfloat16"
