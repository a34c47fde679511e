// Keeping bun-webgpu's packed descriptors alive through the native call.
//
// bun-webgpu packs a descriptor into an ArrayBuffer and each nested array or string (a bind group's entries, the
// WGSL source, an entry point, a label) into an ArrayBuffer or TextEncoder array of its own, and hands Dawn their
// addresses (`ptr(...)`) while nothing keeps the nested ones referenced. A garbage collection between the packing
// and the native call (any JS allocation can start one) may free them before Dawn reads them. Seen here once in a
// run of the WebGPU tests as "Error while parsing WGSL: :1:1 error: null character found" and an invalid pipeline
// after it; a collection forced inside every TextEncoder.encode makes it happen every time (device creation fails
// with "Invalid feature required"), see test/webgpu_pin.test.ts.
//
// While `pinned(fn)` runs, every ArrayBuffer constructed and every array TextEncoder.encode returns is kept in a
// list, dropped when fn returns (Dawn has copied or consumed the descriptor by then). `pinDevice` wraps a
// device so that each of its methods runs pinned.

let keep: unknown[] | null = null;
const OrigArrayBuffer = globalThis.ArrayBuffer;
// TextEncoder.prototype.encode as it was when the outermost pinned call began
let encode = TextEncoder.prototype.encode;

// `new ArrayBuffer(n)` during a pinned call: the same ArrayBuffer, remembered (instanceof and statics unchanged)
function KeptArrayBuffer(length: number, options?: { maxByteLength?: number }): ArrayBuffer {
  const b = new OrigArrayBuffer(length, options);
  keep?.push(b);
  return b;
}
KeptArrayBuffer.prototype = OrigArrayBuffer.prototype;
Object.setPrototypeOf(KeptArrayBuffer, OrigArrayBuffer);
function keptEncode(this: TextEncoder, input?: string): Uint8Array<ArrayBuffer> {
  const u = encode.call(this, input);
  keep?.push(u);
  return u;
}

/** fn's result, with every ArrayBuffer and TextEncoder array it makes kept alive until it returns */
export function pinned<T>(fn: () => T): T {
  if (keep) return fn(); // nested: the outer call keeps them
  keep = [];
  const g = globalThis as { ArrayBuffer: unknown };
  const ab = g.ArrayBuffer;
  encode = TextEncoder.prototype.encode;
  g.ArrayBuffer = KeptArrayBuffer;
  TextEncoder.prototype.encode = keptEncode;
  try {
    return fn();
  } finally {
    g.ArrayBuffer = ab;
    TextEncoder.prototype.encode = encode;
    keep = null;
  }
}

/** the device with each method (createShaderModule, createBindGroup, createBuffer, ...) run through pinned */
export function pinDevice(dev: GPUDevice): GPUDevice {
  const wrapped = new Map<PropertyKey, unknown>();
  return new Proxy(dev, {
    get(target, key) {
      const v = Reflect.get(target, key, target);
      if (typeof v !== "function") return v;
      let w = wrapped.get(key);
      if (!w) wrapped.set(key, (w = (...args: unknown[]) => pinned(() => (v as (...a: unknown[]) => unknown).apply(target, args))));
      return w;
    },
  });
}
