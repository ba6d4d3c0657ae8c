import onnxruntime as ort, numpy as np, time, json, collections, sys
d='/tmp/full-turbo/'
so=ort.SessionOptions(); so.intra_op_num_threads=2; so.enable_profiling=True; so.profile_file_prefix='/tmp/t3prof'
s=ort.InferenceSession(d+'t3_decoder.onnx', so, providers=['CPUExecutionProvider'])
L=24; H=16; hd=64
def feed(past, S):
    f={'inputs_embeds':np.random.randn(1,S,1024).astype(np.float32)*0.1}
    for i in range(L):
        f[f'past_key_{i}']=np.random.randn(1,H,past,hd).astype(np.float32)*0.1
        f[f'past_value_{i}']=np.random.randn(1,H,past,hd).astype(np.float32)*0.1
    return f
for past in (50, 400, 1000):
    f=feed(past,1)
    for _ in range(2): s.run(None,f)
    t=time.perf_counter(); n=8
    for _ in range(n): s.run(None,f)
    print('past',past,'step ms',round((time.perf_counter()-t)/n*1000,1))
f=feed(0,400); t=time.perf_counter(); s.run(None,f); print('prefill 400 ms', round((time.perf_counter()-t)*1000,1))
p=s.end_profiling()
ev=json.load(open(p)); agg=collections.Counter()
for e in ev:
    if e.get('cat')=='Node' and e['name'].endswith('_kernel_time'):
        agg[e['args']['op_name']]+=e['dur']
tot=sum(agg.values())
for k,v in agg.most_common(10): print(k, round(100*v/tot,1))
