/**
 * Anti-replay sliding window for sequence-numbered datagrams.
 *
 * The design follows RFC 6479 ("IPsec Anti-Replay Algorithm without Bit
 * Shifting"): the window is a ring of 32-bit blocks indexed by
 * `floor(seq / 32) mod blocks`; advancing the window only zeroes the blocks it
 * moves into, so no bit shifting or allocation happens per datagram. One block
 * is kept as slack so the block being refilled never holds live bits, which
 * makes the guaranteed window `bits - 32` sequence numbers wide.
 *
 * Acceptance rule (what the tests model exactly):
 * - nothing seen yet, or `seq > highest`: accept;
 * - `seq <= highest - (bits - 32)`: too old, reject;
 * - otherwise accept iff `seq` was not accepted before.
 *
 * Sequence numbers are non-negative safe integers (< 2^53); anything else is
 * rejected by `check`/`update` (returns false) rather than thrown, because the
 * values come from the network. Call `update` only after the datagram's AEAD
 * tag has verified, otherwise a forger could advance the window and make
 * genuine datagrams look old.
 */
export class ReplayWindow {
  /** Sequence numbers accepted relative to `highest` (`bits - 32`). */
  readonly size: number;
  private readonly blocks: Uint32Array;
  private readonly nBlocks: number;
  /** Holds the highest accepted sequence number (-1: none) at index `topIndex`. */
  private readonly topCell: Float64Array;
  private readonly topIndex: number;

  /**
   * @param bits bitmap size in bits: a power of two, at least 64 (default
   *   2048, i.e. a 2016-datagram reorder window). Throws RangeError otherwise.
   * @param shared optional memory to keep the state in instead of private
   *   arrays (the native sleeve path reads and updates the same window, see
   *   overlay/native/sleeve-aead.h): `top[topIndex]` holds the highest counter,
   *   `blocks` (exactly bits/32 entries) the ring. Both are reset here.
   */
  constructor(bits = 2048, shared?: { top: Float64Array; topIndex: number; blocks: Uint32Array }) {
    if (!Number.isInteger(bits) || bits < 64 || (bits & (bits - 1)) !== 0 || bits > 1 << 24) {
      throw new RangeError(`replay window size must be a power of two between 64 and 2^24 bits, got ${bits}`);
    }
    if (shared && shared.blocks.length !== bits / 32) {
      throw new RangeError(`shared replay window memory holds ${shared.blocks.length} blocks, want ${bits / 32}`);
    }
    this.blocks = shared?.blocks ?? new Uint32Array(bits / 32);
    this.topCell = shared?.top ?? new Float64Array(1);
    this.topIndex = shared?.topIndex ?? 0;
    this.nBlocks = bits / 32;
    this.size = bits - 32;
    this.reset();
  }

  private get top(): number {
    return this.topCell[this.topIndex]!;
  }

  private set top(v: number) {
    this.topCell[this.topIndex] = v;
  }

  /** Highest sequence number accepted so far, or -1 if none. */
  get highest(): number {
    return this.top;
  }

  /** Forget everything (as if newly constructed); used when a key slot is reused. */
  reset(): void {
    this.blocks.fill(0);
    this.top = -1;
  }

  /** Take over another window's state (same size); used when a key epoch moves into shared memory. */
  copyFrom(other: ReplayWindow): void {
    if (other.nBlocks !== this.nBlocks) throw new RangeError(`replay window sizes differ: ${other.nBlocks * 32} vs ${this.nBlocks * 32} bits`);
    this.blocks.set(other.blocks);
    this.top = other.top;
  }

  /** Would `seq` be accepted? No state change; cheap enough to run before decryption. */
  check(seq: number): boolean {
    if (!Number.isSafeInteger(seq) || seq < 0) return false;
    if (seq > this.top) return true;
    if (seq + this.size <= this.top) return false;
    const block = Math.floor(seq / 32);
    return (this.blocks[block % this.nBlocks] & (1 << (seq - block * 32))) === 0;
  }

  /**
   * Accept and record `seq`. Returns false (and changes nothing) when `seq` is
   * too old, a duplicate, or not a non-negative safe integer.
   */
  update(seq: number): boolean {
    if (!Number.isSafeInteger(seq) || seq < 0) return false;
    const block = Math.floor(seq / 32);
    const bit = 1 << (seq - block * 32);
    if (seq > this.top) {
      // Zero the blocks the window slides into; a jump of more than the whole
      // ring just clears the ring. Indices use % rather than & because block
      // numbers exceed 2^31 for sequence numbers beyond 2^36.
      const topBlock = this.top < 0 ? -1 : Math.floor(this.top / 32);
      let diff = block - topBlock;
      if (diff > this.blocks.length) diff = this.blocks.length;
      for (let i = 1; i <= diff; i++) {
        this.blocks[(topBlock + i) % this.nBlocks] = 0;
      }
      this.top = seq;
      this.blocks[block % this.nBlocks] |= bit;
      return true;
    }
    if (seq + this.size <= this.top) return false;
    const idx = block % this.nBlocks;
    const word = this.blocks[idx];
    if ((word & bit) !== 0) return false;
    this.blocks[idx] = word | bit;
    return true;
  }
}
