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
  private top = -1;

  /**
   * @param bits bitmap size in bits: a power of two, at least 64 (default
   *   2048, i.e. a 2016-datagram reorder window). Throws RangeError otherwise.
   */
  constructor(bits = 2048) {
    if (!Number.isInteger(bits) || bits < 64 || (bits & (bits - 1)) !== 0 || bits > 1 << 24) {
      throw new RangeError(`replay window size must be a power of two between 64 and 2^24 bits, got ${bits}`);
    }
    this.blocks = new Uint32Array(bits / 32);
    this.nBlocks = bits / 32;
    this.size = bits - 32;
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
