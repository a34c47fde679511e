/** Typed errors. Every message says what went wrong, which input, and what to do. */
export class GptqError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = this.constructor.name;
  }
}
/** A user-supplied value broke a rule: names the parameter and the rule. */
export class InvalidArgumentError extends GptqError {}
/** A model folder, config or tokenizer that cannot be used. */
export class ModelFormatError extends GptqError {}
/** A safetensors file that is truncated, corrupted or inconsistent. */
export class SafetensorsError extends GptqError {}
/** A backend that cannot run here (probe failed) or was asked for by an unknown name. */
export class BackendUnavailableError extends GptqError {}
/** An op/dtype/shape a backend does not implement: we refuse instead of silently falling back. */
export class UnsupportedOpError extends GptqError {}
/** Native code (BLAS, CUDA, Dawn) returned an error status. */
export class NativeError extends GptqError {}
/** Hessian not positive-definite even after the damping retries. */
export class NumericalError extends GptqError {}
/** Downloading from the Hugging Face hub failed. */
export class HubError extends GptqError {}
