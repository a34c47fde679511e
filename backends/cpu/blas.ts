/**
 * BLAS/LAPACK through bun:ffi: OpenBLAS on Linux (Debian: libopenblas0-pthread), Accelerate on macOS.
 * Only the handful of routines the CPU backend needs. GPTQ_BLAS overrides the library path;
 * GPTQ_DEBUG=1 prints every path tried.
 */
import { dlopen, FFIType } from "bun:ffi";
import { BackendUnavailableError, NativeError } from "../../src/errors.ts";

const CblasRowMajor = 101;
export const NoTrans = 111;
export const Trans = 112;
const CblasUpper = 121;

const symbols = {
  cblas_sgemm: {
    args: [FFIType.i32, FFIType.i32, FFIType.i32, FFIType.i32, FFIType.i32, FFIType.i32, FFIType.f32, FFIType.ptr, FFIType.i32, FFIType.ptr, FFIType.i32, FFIType.f32, FFIType.ptr, FFIType.i32],
    returns: FFIType.void,
  },
  cblas_ssyrk: {
    args: [FFIType.i32, FFIType.i32, FFIType.i32, FFIType.i32, FFIType.i32, FFIType.f32, FFIType.ptr, FFIType.i32, FFIType.f32, FFIType.ptr, FFIType.i32],
    returns: FFIType.void,
  },
  dpotrf_: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr, FFIType.ptr, FFIType.ptr], returns: FFIType.void },
  dpotri_: { args: [FFIType.ptr, FFIType.ptr, FFIType.ptr, FFIType.ptr, FFIType.ptr], returns: FFIType.void },
} as const;

function candidates(): string[] {
  const env = process.env.GPTQ_BLAS;
  const list = env ? [env] : [];
  if (process.platform === "darwin") list.push("/System/Library/Frameworks/Accelerate.framework/Accelerate");
  list.push("libopenblas.so.0", "libopenblas.so", "/usr/lib/x86_64-linux-gnu/libopenblas.so.0", "/usr/lib/aarch64-linux-gnu/libopenblas.so.0", "libopenblasp.so.0");
  return list;
}

type Lib = ReturnType<typeof dlopen<typeof symbols>>;
let lib: Lib | null = null;
let loadError: string | null = null;
export let blasPath = "";

export function loadBlas(): Lib {
  if (lib) return lib;
  if (loadError) throw new BackendUnavailableError(loadError);
  const tried: string[] = [];
  for (const p of candidates()) {
    try {
      lib = dlopen(p, symbols);
      blasPath = p;
      if (process.env.GPTQ_DEBUG) console.error(`[gptq] blas: loaded ${p}`);
      return lib;
    } catch (e) {
      tried.push(`${p}: ${(e as Error).message.split("\n")[0]}`);
      if (process.env.GPTQ_DEBUG) console.error(`[gptq] blas: tried ${p}: ${(e as Error).message}`);
    }
  }
  loadError =
    `no BLAS library found (tried ${tried.length} paths; set GPTQ_DEBUG=1 to list them). ` +
    `Install OpenBLAS (Debian/Ubuntu: apt-get install libopenblas0-pthread) or set GPTQ_BLAS=/path/to/libopenblas.so`;
  throw new BackendUnavailableError(loadError);
}

export function blasAvailable(): { ok: boolean; path?: string; reason?: string } {
  try {
    loadBlas();
    return { ok: true, path: blasPath };
  } catch (e) {
    return { ok: false, reason: (e as Error).message };
  }
}

/**
 * Row-major C [M,N] = alpha · op(A) · op(B) + beta · C.
 * op(A) is [M,K] (A stored [M,K] or, transposed, [K,M]); op(B) is [K,N] (B stored [K,N] or, transposed, [N,K]).
 */
export function sgemm(
  transA: boolean, transB: boolean, M: number, N: number, K: number, alpha: number,
  A: Float32Array, lda: number, B: Float32Array, ldb: number, beta: number, C: Float32Array, ldc: number,
): void {
  if (M === 0 || N === 0) return;
  loadBlas().symbols.cblas_sgemm(CblasRowMajor, transA ? Trans : NoTrans, transB ? Trans : NoTrans, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

/** Row-major upper triangle of C [N,N] = alpha · Aᵀ A + beta · C for A [K,N]. */
export function ssyrkT(N: number, K: number, alpha: number, A: Float32Array, lda: number, beta: number, C: Float32Array): void {
  loadBlas().symbols.cblas_ssyrk(CblasRowMajor, CblasUpper, Trans, N, K, alpha, A, lda, beta, C, N);
}

const uploL = new Uint8Array([76]); // 'L'
/**
 * Cholesky of a symmetric row-major A [n,n] (float64, in place). Seen column-major, the lower factor L
 * (A = L Lᵀ) lands in the row-major upper triangle as U = Lᵀ, so A = UᵀU. Returns LAPACK's info (0 = ok).
 */
export function dpotrfUpper(a: Float64Array, n: number): number {
  const nn = new Int32Array([n]);
  const info = new Int32Array(1);
  loadBlas().symbols.dpotrf_(uploL, nn, a, nn, info);
  return info[0]!;
}
/** After dpotrfUpper: the inverse of A into the row-major upper triangle. */
export function dpotriUpper(a: Float64Array, n: number): number {
  const nn = new Int32Array([n]);
  const info = new Int32Array(1);
  loadBlas().symbols.dpotri_(uploL, nn, a, nn, info);
  if (info[0]! < 0) throw new NativeError(`LAPACK dpotri: argument ${-info[0]!} invalid`);
  return info[0]!;
}
