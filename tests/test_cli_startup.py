"""qx's start-up defers sympy (imported by onnx_ir, used only for symbolic-dimension arithmetic):
the CLI and the quantizer import without loading it, and the first real use loads the real
package, from any thread. Each check runs in a fresh interpreter (this one has sympy loaded)."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def _run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_cli_and_the_quantizer_import_without_loading_sympy_and_it_loads_on_first_use():
    out = _run("""
        import sys
        import mlperf_qx.cli.main, mlperf_qx.quantize
        import onnx_ir as ir
        print(type(sys.modules["sympy"]).__name__, type(sys.modules["onnx_ir._symbolic_shapes"]).__name__)
        print((ir.SymbolicDim("n") + 1) * 2, type(sys.modules["sympy"]).__name__)
        from sympy import Integer
        import sympy.core.numbers
        print(Integer(3) + sympy.core.numbers.Rational(1, 2), ir._symbolic_shapes.parse_symbolic_expression("n+1"))
    """)
    assert out.splitlines() == ["_Deferred _Deferred", "2*n + 2 module", "7/2 n + 1"]


def test_threads_that_first_use_sympy_at_once_all_see_the_whole_package():
    out = _run("""
        import sys, threading
        import mlperf_qx.cli.main
        import sympy
        results, start = [], threading.Barrier(4)
        def use():
            start.wait()
            results.append(str(sympy.simplify(sympy.Symbol("x") * 2 - sympy.Symbol("x"))))
        threads = [threading.Thread(target=use) for _ in range(4)]
        for t in threads: t.start()
        for t in threads: t.join()
        print(sorted(results))
    """)
    assert out == "['x', 'x', 'x', 'x']"


def test_qx_help_leaves_sympy_unloaded():
    out = _run("""
        import sys
        from mlperf_qx.cli.main import main
        code = main(["--help"])
        print(code, type(sys.modules["sympy"]).__name__)
    """)
    assert "quantize" in out and "verify-equivalence" in out and "inspect" in out
    assert out.splitlines()[-1] == "0 _Deferred"
