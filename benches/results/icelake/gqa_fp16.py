"""One GroupQueryAttention decode step (batch 2, 16 heads x 64, in-place cache of 1100), fp32 vs fp16, at past 50 / 1000."""
import time, statistics as st
import numpy as np, onnxruntime as ort
from onnx import helper, TensorProto as TP
B, H, D, CAP = 2, 16, 64, 1100
def model(dt):
    T = TP.FLOAT if dt == np.float32 else TP.FLOAT16
    ins = [helper.make_tensor_value_info("q", T, [B, 1, H * D]), helper.make_tensor_value_info("k", T, [B, 1, H * D]),
           helper.make_tensor_value_info("v", T, [B, 1, H * D]),
           helper.make_tensor_value_info("pk", T, [B, H, CAP, D]), helper.make_tensor_value_info("pv", T, [B, H, CAP, D]),
           helper.make_tensor_value_info("sl", TP.INT32, [B, 1]), helper.make_tensor_value_info("tot", TP.INT32, [])]
    n = helper.make_node("GroupQueryAttention", ["q", "k", "v", "pk", "pv", "sl", "tot"], ["o", "ok", "ov"], domain="com.microsoft",
                         num_heads=H, kv_num_heads=H)
    g = helper.make_graph([n], "g", ins, [helper.make_tensor_value_info(x, T, None) for x in ("o", "ok", "ov")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
so = ort.SessionOptions(); so.intra_op_num_threads = 2
for dt in (np.float32, np.float16):
    s = ort.InferenceSession(model(dt).SerializeToString(), so, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    pk = ort.OrtValue.ortvalue_from_numpy(rng.standard_normal((B, H, CAP, D)).astype(dt))
    pv = ort.OrtValue.ortvalue_from_numpy(rng.standard_normal((B, H, CAP, D)).astype(dt))
    for past in (50, 1000, 50, 1000):
        io = s.io_binding()
        for nme in "qkv":
            io.bind_cpu_input(nme, rng.standard_normal((B, 1, H * D)).astype(dt))
        io.bind_ortvalue_input("pk", pk); io.bind_ortvalue_input("pv", pv)
        io.bind_cpu_input("sl", np.full((B, 1), past, np.int32)); io.bind_cpu_input("tot", np.array(past + 1, np.int32))
        io.bind_output("o"); io.bind_ortvalue_output("ok", pk); io.bind_ortvalue_output("ov", pv)
        for _ in range(5): s.run_with_iobinding(io)
        ts = []
        for _ in range(60):
            t = time.perf_counter(); s.run_with_iobinding(io); ts.append((time.perf_counter() - t) * 1e3)
        print(f"{dt.__name__} past {past}: {st.median(ts):.3f} ms (min {min(ts):.3f}); x30 layers = {30 * st.median(ts):.1f} ms per step")
