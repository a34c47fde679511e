/**
 * The symbol table of libgptq_cuda (kernels/gptq_cuda.h), in one place, and where the libraries are found.
 * GPTQ_CUDA_LIB overrides our library's path, GPTQ_CUBLAS / GPTQ_CUSOLVER the NVIDIA ones; GPTQ_DEBUG=1
 * prints every path tried.
 */
import { dlopen, FFIType } from "bun:ffi";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";

const { ptr, i32, i64, f32, cstring } = FFIType;
const P = ptr;

export const symbols = {
  gq_abi_version: { args: [], returns: i32 },
  gq_last_error: { args: [], returns: cstring },
  gq_device_count: { args: [P], returns: i32 },
  gq_device_info: { args: [i32, P, i32, P, P, P, P], returns: i32 },
  gq_init: { args: [i32, P, P, i32], returns: i32 },
  gq_malloc: { args: [P, i64], returns: i32 },
  gq_free: { args: [P], returns: i32 },
  gq_memset: { args: [P, i32, i64], returns: i32 },
  gq_upload: { args: [P, P, i64], returns: i32 },
  gq_download: { args: [P, P, i64], returns: i32 },
  gq_copy: { args: [P, P, i64], returns: i32 },
  gq_sync: { args: [], returns: i32 },
  gq_mem_info: { args: [P, P], returns: i32 },
  gq_host_alloc: { args: [P, P, i64], returns: i32 },
  gq_host_free: { args: [P], returns: i32 },
  gq_query: { args: [P], returns: i32 },
  gq_timer_start: { args: [], returns: i32 },
  gq_timer_stop: { args: [P], returns: i32 },
  gq_graph_begin: { args: [], returns: i32 },
  gq_graph_end: { args: [P, P, i64], returns: i32 },
  gq_graph_launch: { args: [P], returns: i32 },
  gq_graph_free: { args: [P], returns: i32 },
  gq_convert: { args: [P, P, i64, i32], returns: i32 },
  gq_gemm: { args: [i32, i32, i32, i32, i32, f32, P, i32, P, i32, f32, P, i32], returns: i32 },
  gq_add_bias: { args: [P, P, i32, i32], returns: i32 },
  gq_to_half: { args: [P, P, i64], returns: i32 },
  gq_half_gemv: { args: [P, P, P, i32, i32, i32], returns: i32 },
  gq_embedding: { args: [P, P, P, i32, i32, i32], returns: i32 },
  gq_rms_norm: { args: [P, P, P, i32, i32, f32], returns: i32 },
  gq_add_rms_norm: { args: [P, P, P, P, P, i32, i32, f32], returns: i32 },
  gq_rope: { args: [P, P, i32, i32, i32, i32, P, i32, f32], returns: i32 },
  gq_rope_kv: { args: [P, P, P, P, P, P, i32, i32, i32, i32, i32, P, i32, f32], returns: i32 },
  gq_attention: { args: [P, P, P, P, i32, i32, P, i32, i32, i32, i32, i32], returns: i32 },
  gq_rope_attention: { args: [P, P, P, P, P, P, P, i32, i32, i32, i32, i32, P, i32, f32], returns: i32 },
  gq_write_rows: { args: [P, P, i32, P, i32, i32, i32], returns: i32 },
  gq_silu_mul: { args: [P, P, P, i64], returns: i32 },
  gq_add: { args: [P, P, P, i64], returns: i32 },
  gq_scale: { args: [P, f32, i64], returns: i32 },
  gq_log_softmax: { args: [P, P, i32, i32], returns: i32 },
  gq_nll: { args: [P, P, P, i32, i32], returns: i32 },
  gq_argmax_next: { args: [P, i32, P, P, P, i32], returns: i32 },
  gq_hessian_accumulate: { args: [P, P, i32, i32], returns: i32 },
  gq_diagonal: { args: [P, P, i32], returns: i32 },
  gq_cholesky_inverse_upper: { args: [P, i32, f32, P], returns: i32 },
  gq_gptq_prepare: { args: [P, P, P, i32, i32], returns: i32 },
  gq_quant_params: { args: [P, i32, i32, i32, i32, P, P, i32, i32, i32], returns: i32 },
  gq_gptq_permute: { args: [P, P, P, P, P, i32, i32], returns: i32 },
  gq_gptq_block: { args: [P, P, P, P, P, P, P, P, i32, i32, i32, i32, i32, i32, i32, i32, i32], returns: i32 },
  gq_gptq_update: { args: [P, P, P, i32, i32, i32, i32], returns: i32 },
  gq_gptq_finish: { args: [P, P, P, P, P, i32, i32, i32], returns: i32 },
  gq_qm_unpack_zeros: { args: [P, P, i32, i32, i32, i32], returns: i32 },
  gq_qm_repack4: { args: [P, P, P, P, P, P, i32, i32, i32, i32], returns: i32 },
  gq_qm_matmul4: { args: [P, P, P, P, P, P, i32, i32, i32, i32], returns: i32 },
  gq_qm_matmul4_many: { args: [i32, P, P, P, P, P, P, P, i32, i32, i32], returns: i32 },
  gq_qm_matmul4_gated: { args: [P, P, P, P, P, P, P, i32, i32, i32, i32], returns: i32 },
  gq_qm_matmul4_add: { args: [P, P, P, P, P, P, P, P, i32, i32, i32, i32], returns: i32 },
  gq_qm_matmul4_many_normed: { args: [i32, P, P, P, P, P, P, P, i32, i32, i32, P, f32], returns: i32 },
  gq_qm_zeroed: { args: [P, i64], returns: i32 },
  gq_qm_matmul_generic: { args: [P, P, P, P, P, P, P, i32, i32, i32, i32], returns: i32 },
  gq_qm_dequant: { args: [P, P, P, P, P, i32, i32, i32], returns: i32 },
  gq_hgemm_nt: { args: [P, P, P, i32, i32, i32], returns: i32 },
} as const;

export const ABI_VERSION = 9;
export type CudaLib = ReturnType<typeof dlopen<typeof symbols>>["symbols"];

const debug = (s: string) => process.env.GPTQ_DEBUG && console.error(`[gptq] cuda: ${s}`);

/**
 * our library: GPTQ_CUDA_LIB alone when set (an override that cannot be loaded is an error, never a silent
 * fallback to another build), else build/libgptq_cuda.so next to the repository root
 */
export function libraryCandidates(): string[] {
  if (process.env.GPTQ_CUDA_LIB) return [process.env.GPTQ_CUDA_LIB];
  return [join(import.meta.dir, "..", "..", "build", "libgptq_cuda.so"), join(import.meta.dir, "libgptq_cuda.so")];
}

export function openLibrary(): { lib: CudaLib; path: string } | { error: string } {
  const tried: string[] = [];
  for (const p of libraryCandidates()) {
    if (!existsSync(p)) {
      debug(`tried ${p}: not found`);
      tried.push(`${p} (not found)`);
      continue;
    }
    try {
      const { symbols: lib } = dlopen(p, symbols);
      debug(`loaded ${p}`);
      const v = lib.gq_abi_version();
      if (v !== ABI_VERSION) return { error: `${p} has ABI version ${v}, this code needs ${ABI_VERSION}: rebuild with "npm run build:cuda"` };
      return { lib, path: p };
    } catch (e) {
      debug(`tried ${p}: ${(e as Error).message}`);
      tried.push(`${p} (${(e as Error).message.split("\n")[0]})`);
    }
  }
  return { error: `libgptq_cuda.so not built (tried ${tried.join(", ")}); run "npm run build:cuda" (needs nvcc) or set GPTQ_CUDA_LIB` };
}

/** where NVIDIA's cuBLAS / cuSOLVER may live: env, LD_LIBRARY_PATH, the CUDA toolkit, Python wheels */
export function findNvidiaLibrary(stem: "libcublas" | "libcusolver", envVar: string): { path?: string; tried: string[] } {
  const tried: string[] = [];
  const env = process.env[envVar];
  if (env) {
    tried.push(env);
    if (existsSync(env)) return { path: env, tried };
  }
  const dirs = [
    ...(process.env.LD_LIBRARY_PATH ?? "").split(":").filter(Boolean),
    ...(process.env.CUDA_HOME ? [join(process.env.CUDA_HOME, "lib64")] : []),
    "/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib", "/usr/lib/x86_64-linux-gnu",
  ];
  for (const root of ["/opt", "/usr/local/lib", "/usr/lib", join(process.env.HOME ?? "/root", ".local/lib")]) {
    for (const pat of ["*/.venv/lib/python3*/site-packages/nvidia/*/lib", "*/lib/python3*/site-packages/nvidia/*/lib", "python3*/dist-packages/nvidia/*/lib", "python3*/site-packages/nvidia/*/lib"]) {
      try {
        for (const d of new Bun.Glob(pat).scanSync({ cwd: root, onlyFiles: false })) dirs.push(join(root, d));
      } catch {}
    }
  }
  for (const d of dirs) {
    let names: string[] = [];
    try {
      names = readdirSync(d).filter((f) => f.startsWith(`${stem}.so`) && !f.includes("Lt"));
    } catch {
      continue;
    }
    names.sort((a, b) => b.length - a.length || b.localeCompare(a)); // the most specific version first
    for (const n of names) {
      const p = join(d, n);
      tried.push(p);
      debug(`found ${p}`);
      return { path: p, tried };
    }
    tried.push(`${d}/${stem}.so* (none)`);
    debug(`tried ${d}: no ${stem}.so*`);
  }
  return { tried };
}
