"""One edition built under different numerics: are its medians and verdicts the same?

Issue 23's bar for the default book: the same verdicts, and medians within
0.02, whether training runs in bf16 (``auto`` on a CPU with native bf16),
fp32, or fp32 limited to AVX2. Build each arm in its own clone with its own
cache (the runs of one folder must not mix), for example::

    for arm in bf16 fp32 avx2; do
      git clone -q . /tmp/arm-$arm/p && ln -s "$PWD/../shared" /tmp/arm-$arm/shared
      ( cd /tmp/arm-$arm/p && export IQALIB_CACHE=/tmp/arm-$arm/cache
        case $arm in
          bf16) export IQALIB_CPU_PRECISION=bf16 ;;
          fp32) export IQALIB_CPU_PRECISION=fp32 ;;
          avx2) export IQALIB_CPU_PRECISION=fp32 ATEN_CPU_CAPABILITY=avx2 \\
                       ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 ;;
        esac
        make book )
    done

then compare the three book folders::

    python benchmarks/edition_agreement.py bf16=/tmp/arm-bf16/p/runs/book/default \\
        fp32=/tmp/arm-fp32/p/runs/book/default avx2=/tmp/arm-avx2/p/runs/book/default

It prints every run's median test SRCC per arm with the spread, every
claim's verdict per arm, and whether all agree
(:func:`iqalib.analysis.agreement.agreement`), and writes
``benchmarks/results/edition_agreement.json`` (``--out``). Exit status 1
when a verdict or a median disagrees.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common import RESULTS, cpu_info

from iqalib.analysis.agreement import agreement
from iqalib.files import atomic_write_json


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("builds", nargs="+", help="label=runs/book/<profile> of each build (at least two)")
    parser.add_argument("--out", default=str(RESULTS / "edition_agreement.json"))
    args = parser.parse_args(argv)
    builds = {}
    for item in args.builds:
        label, sep, path = item.partition("=")
        if not sep or not label or not path:
            parser.error(f"{item!r}: write label=path, e.g. bf16=runs/book/default")
        builds[label] = path
    result = agreement(builds)
    medians, verdicts = result["medians"], result["verdicts"]
    print(medians.round(4).to_string())
    print()
    print(verdicts.to_string())
    print(f"\nmedians within {result['tolerance']:g}: {result['all_medians_within']}; "
          f"verdicts agree: {result['all_verdicts_agree']}")
    atomic_write_json(Path(args.out), {"machine": cpu_info(), **{k: v for k, v in result.items() if k not in ("medians", "verdicts")},
                          "medians": medians.reset_index().to_dict(orient="records"),
                          "verdicts": verdicts.reset_index().to_dict(orient="records")})
    return 0 if result["all_medians_within"] and result["all_verdicts_agree"] else 1


if __name__ == "__main__":
    sys.exit(main())
