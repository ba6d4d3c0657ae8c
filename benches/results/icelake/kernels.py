"""The flow estimator's pieces, ONNX Runtime against PyTorch on this machine (2 threads, medians of 15
calls): one attention of the estimator (ORT MultiHeadAttention, the flash path, vs torch SDPA), its
weight products (MatMul shapes of batch 2 x 700 frames) and one k=3 convolution. Output: kernels.txt."""
import time, statistics as st
import numpy as np
import onnx, onnxruntime as ort
from onnx import helper, TensorProto as TP
import torch
torch.set_num_threads(2)

def sess(model):
    so = ort.SessionOptions(); so.intra_op_num_threads = 2; so.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])

def timeit(f, n=15):
    for _ in range(3): f()
    ts = []
    for _ in range(n):
        t = time.perf_counter(); f(); ts.append((time.perf_counter() - t) * 1e3)
    return st.median(ts), min(ts), max(ts)

B, T, H, D = 2, 700, 8, 64
rng = np.random.default_rng(0)
q = rng.standard_normal((B, T, H * D), dtype=np.float32)
k = rng.standard_normal((B, T, H * D), dtype=np.float32)
v = rng.standard_normal((B, T, H * D), dtype=np.float32)
mha = helper.make_model(helper.make_graph(
    [helper.make_node("MultiHeadAttention", ["q", "k", "v"], ["o"], domain="com.microsoft", num_heads=H)], "g",
    [helper.make_tensor_value_info(n, TP.FLOAT, [B, T, H * D]) for n in "qkv"], [helper.make_tensor_value_info("o", TP.FLOAT, None)]),
    opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
s = sess(mha)
r_ort = timeit(lambda: s.run(None, {"q": q, "k": k, "v": v}))
tq, tk, tv = (torch.from_numpy(x).view(B, T, H, D).transpose(1, 2).contiguous() for x in (q, k, v))
with torch.inference_mode():
    r_t = timeit(lambda: torch.nn.functional.scaled_dot_product_attention(tq, tk, tv))
print(f"attention [2,8,700,64]: ORT MHA {r_ort[0]:.1f} ({r_ort[1]:.1f}-{r_ort[2]:.1f}) ms, torch SDPA {r_t[0]:.1f} ({r_t[1]:.1f}-{r_t[2]:.1f}) ms")
for (m, kk, n) in [(1400, 256, 512), (1400, 512, 256), (1400, 256, 1024), (1400, 1024, 256), (1400, 768, 256)]:
    a = rng.standard_normal((m, kk), dtype=np.float32); w = rng.standard_normal((kk, n), dtype=np.float32)
    mm = helper.make_model(helper.make_graph([helper.make_node("MatMul", ["a", "w"], ["o"])], "g",
        [helper.make_tensor_value_info("a", TP.FLOAT, [m, kk])], [helper.make_tensor_value_info("o", TP.FLOAT, None)],
        [onnx.numpy_helper.from_array(w, "w")]), opset_imports=[helper.make_opsetid("", 17)])
    s = sess(mm)
    r1 = timeit(lambda: s.run(None, {"a": a}))
    ta, tw = torch.from_numpy(a), torch.from_numpy(w)
    with torch.inference_mode():
        r2 = timeit(lambda: ta @ tw)
    gf = 2 * m * kk * n / 1e9
    print(f"MatMul {m}x{kk}x{n}: ORT {r1[0]:.2f} ms ({gf / r1[0] * 1e3:.0f} GFLOP/s), torch {r2[0]:.2f} ms ({gf / r2[0] * 1e3:.0f} GFLOP/s)")
# conv1d k=3 256->256 on [2,256,702]
x = rng.standard_normal((2, 256, 702), dtype=np.float32); w = rng.standard_normal((256, 256, 3), dtype=np.float32) * 0.05
cv = helper.make_model(helper.make_graph([helper.make_node("Conv", ["x", "w"], ["o"], kernel_shape=[3])], "g",
    [helper.make_tensor_value_info("x", TP.FLOAT, [2, 256, 702])], [helper.make_tensor_value_info("o", TP.FLOAT, None)],
    [onnx.numpy_helper.from_array(w, "w")]), opset_imports=[helper.make_opsetid("", 17)])
s = sess(cv)
r1 = timeit(lambda: s.run(None, {"x": x}))
tx, tw = torch.from_numpy(x), torch.from_numpy(w)
with torch.inference_mode():
    r2 = timeit(lambda: torch.nn.functional.conv1d(tx, tw))
print(f"Conv1d k3 256->256 [2,256,702]: ORT {r1[0]:.2f} ms, torch {r2[0]:.2f} ms")
print("torch config:", torch.__config__.parallel_info().split("\n")[:6])
print("mkl:", torch.backends.mkl.is_available(), "mkldnn:", torch.backends.mkldnn.is_available())
