"""The GPU scan-unroll sweep of BENCHMARKS.md, as it was run.

Steps/s of one compiled training chunk (``train.make_train_chunk``: 1,856 batch-32 steps, or 32
batch-1024 steps) for each scan unroll, best and median of 5 timed runs after an untimed one;
with ``OUT_DIR`` and ``LABEL`` ``default`` it also writes the optimized HLO of batch 32 at unroll
2 and 16 (where the kernel counts come from). ``AEJAX_SWEEP=32:2,4`` limits it to one batch size
and those unrolls; ``XLA_FLAGS`` picks the compiler's options (the JSON records them). It
writes ``OUT_DIR/unroll_LABEL.json``; docs/gpu-unroll-sweep-h100.json holds three such files
(``default``; ``nocmdbuf``: ``XLA_FLAGS=--xla_gpu_enable_command_buffer=``; ``cublas``:
``AEJAX_SWEEP=32:2,4 XLA_FLAGS=--xla_gpu_enable_triton_gemm=false``).

    PYTHONPATH=. python docs/gpu_unroll_sweep.py OUT_DIR LABEL MNIST_DIR
"""
import json, os, sys, time
import jax, jax.numpy as jnp, numpy as np
from aejax import bench_report, machine, train
from aejax.config import Config

out = sys.argv[1]
label = sys.argv[2]
machine.use_platform(None)  # same precision setting as bench.py on GPU
images_u8 = np.asarray(bench_report.images(sys.argv[3], 60000)[0])
images = jax.device_put(images_u8)
res = {"label": label, "xla_flags": os.environ.get("XLA_FLAGS", ""), "backend": jax.default_backend(),
       "device": jax.devices()[0].device_kind, "jax": jax.__version__, "rows": []}
SWEEP = os.environ.get("AEJAX_SWEEP")
sweeps = (((32, (1, 2, 4, 8, 16, 32)), (1024, (1, 2, 8))) if not SWEEP else
          [(int(SWEEP.split(":")[0]), tuple(map(int, SWEEP.split(":")[1].split(","))))])
for batch, unrolls in sweeps:
    cfg = Config(batch_size=batch)
    model, tx = train.make_model(cfg), train.make_optimizer(cfg)
    keys = train.root_keys(0)
    step_fn = train.make_train_step(cfg, model, tx)
    steps = 60000 // batch
    length = steps - steps % 32
    order = train.epoch_order(keys["data"], 60000, batch)
    for u in unrolls:
        state = train.create_state(keys["init"], model, tx)
        t = time.perf_counter()
        chunk = train.make_train_chunk(step_fn, length, unroll=u).lower(
            state, images, order, jnp.int32(0), keys["noise"]).compile()
        ct = time.perf_counter() - t
        if batch == 32 and u in (2, 16) and label == "default":
            with open(os.path.join(out, f"hlo_b32_u{u}.txt"), "w") as f:
                f.write(chunk.as_text())
        times = []
        for _ in range(6):
            t = time.perf_counter()
            state, m = chunk(state, images, order, jnp.int32(0), keys["noise"])
            jax.block_until_ready((state, m))
            times.append(time.perf_counter() - t)
        best = min(times[1:])
        row = {"batch": batch, "unroll": u, "length": length, "compile_s": round(ct, 2),
               "steps_per_s": round(length / best, 1),
               "median_steps_per_s": round(length / float(np.median(times[1:])), 1),
               "last_loss": float(m["loss"][-1])}
        res["rows"].append(row)
        print(label, row, flush=True)
with open(os.path.join(out, f"unroll_{label}.json"), "w") as f:
    json.dump(res, f, indent=1)
