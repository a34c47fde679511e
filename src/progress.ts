/**
 * A small progress bar on stderr (rewrites one line on a TTY; one line per 10% otherwise, so logs stay
 * readable in CI). Silent when GPTQ_QUIET is set.
 */
export class Progress {
  private done_ = 0;
  private start = performance.now();
  private lastDraw = 0;
  private lastPct = -1;
  private readonly tty = Boolean(process.stderr.isTTY);
  private readonly quiet = Boolean(process.env.GPTQ_QUIET);
  status = "";

  constructor(private label: string, private total: number, private unit = "") {}

  addTotal(n: number): void {
    this.total += n;
  }
  tick(n = 1, status?: string): void {
    this.done_ += n;
    if (status !== undefined) this.status = status;
    this.draw(false);
  }
  private fmt(n: number): string {
    if (this.unit === "B") return n > 1e9 ? `${(n / 1e9).toFixed(2)}GB` : n > 1e6 ? `${(n / 1e6).toFixed(1)}MB` : `${(n / 1e3).toFixed(0)}kB`;
    return String(n);
  }
  private draw(final: boolean): void {
    if (this.quiet) return;
    const now = performance.now();
    const pct = this.total ? Math.min(100, Math.floor((100 * this.done_) / this.total)) : 0;
    const secs = (now - this.start) / 1000;
    const eta = this.done_ && this.total ? (secs / this.done_) * (this.total - this.done_) : 0;
    const width = 24;
    const fill = Math.round((width * pct) / 100);
    const line = `${this.label} [${"#".repeat(fill)}${".".repeat(width - fill)}] ${this.fmt(this.done_)}/${this.fmt(this.total)} ${pct}% ${secs.toFixed(1)}s${!final && eta ? ` eta ${eta.toFixed(0)}s` : ""}${this.status ? ` ${this.status}` : ""}`;
    if (this.tty) {
      if (!final && now - this.lastDraw < 100) return;
      this.lastDraw = now;
      process.stderr.write(`\r\x1b[2K${line}${final ? "\n" : ""}`);
    } else {
      const dec = Math.floor(pct / 10);
      if (!final && dec === this.lastPct) return;
      this.lastPct = dec;
      process.stderr.write(`${line}\n`);
    }
  }
  done(): void {
    this.draw(true);
  }
}

/**
 * GPTQ_PROFILE: wall time of each phase, measured after waiting for the device (slows the run a little;
 * printed to stderr as "profile <what>: phase s, …"). GPTQ_PROFILE=1: phases of each layer of `quantize`;
 * GPTQ_PROFILE=gptq: also the phases of GPTQ on each linear (prepare, Cholesky, column blocks, finish).
 */
export class PhaseTimer {
  private t = performance.now();
  private parts: string[] = [];
  readonly on: boolean;
  constructor(private readonly be: { sync(): Promise<void> }, level: "layer" | "gptq" = "layer") {
    const v = process.env.GPTQ_PROFILE ?? "";
    this.on = level === "layer" ? Boolean(v) : v === "gptq";
  }
  async mark(label: string): Promise<void> {
    if (!this.on) return;
    await this.be.sync();
    const now = performance.now();
    this.parts.push(`${label} ${((now - this.t) / 1000).toFixed(3)}`);
    this.t = now;
  }
  flush(prefix: string): void {
    if (this.on && this.parts.length) console.error(`profile ${prefix}: ${this.parts.join(", ")}`);
    this.parts = [];
  }
}
