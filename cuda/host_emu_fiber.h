// host_emu_fiber.h: the emulator's scheduler, included by host_emu.h (which states the model and
// the rules kernels follow). A launch's blocks are shared out to one worker OS thread per host
// core; a worker runs a block's CUDA threads as fibers that switch only at barriers.
//
// Why fibers: a 128-thread block meets at a barrier every few hundred instructions (block sums,
// GEMM stages, every warp shuffle). As OS threads on two cores each barrier costs 128 futex wake-ups
// and context switches (~µs each); as fibers it costs 128 switches of a few nanoseconds.
// Measurements: benches/README.md, "Emulator".
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#if !defined(__x86_64__) || defined(DDR_EMU_UCONTEXT)
#define DDR_EMU_USE_UCONTEXT 1
#include <ucontext.h>
#endif

namespace ddr_emu {

constexpr unsigned kWarp = 32;
// A fiber's stack: the deepest kernel frame today is the GEMM tile (~12 KiB of wmma fragments);
// 256 KiB leaves room for kernels to grow, and untouched pages are never committed. A guard page
// below each stack turns an overflow into a segfault instead of silent corruption.
constexpr size_t kStackBytes = 256 * 1024;

// One launch, shared by every worker that takes blocks of it.
struct Launch {
  dim3 grid, block;
  unsigned threads = 0;
  uint64_t blocks = 0;               // grid.x · grid.y · grid.z
  std::function<void()> body;        // the kernel applied to its params, for the current thread
  std::atomic<uint64_t> next{0};     // the next linear block index nobody has claimed
};

// A barrier over the fibers [first, first + count) of a block.
struct Barrier {
  unsigned first = 0, count = 0, arrived = 0;
};

// One warp's barrier and shuffle mailboxes (two sets, see shfl_from in host_emu.h).
struct WarpState {
  Barrier bar;
  uint64_t slot[2][kWarp] = {};
};

// Where a switched-out fiber (or a worker's own stack) resumes.
struct Context {
#ifdef DDR_EMU_USE_UCONTEXT
  ucontext_t uc;
#else
  void* sp = nullptr;  // its saved stack pointer; the callee-saved registers are on that stack
#endif
};

struct Fiber {
  Context ctx;
  unsigned char* stack = nullptr;  // lowest usable byte; kStackBytes long, guard page below
  dim3 tid;                        // threadIdx
  unsigned id = 0, lane = 0;       // linear thread index in the block, lane in its warp
  unsigned shuffles = 0;           // shuffles made so far: picks the mailbox set
  const Barrier* waiting = nullptr;  // the barrier this fiber waits at, if any
  bool done = false;
};

// What a worker OS thread needs to run blocks: fibers (with their stacks, kept between blocks and
// launches), the barriers of the block it is running, and its own context to return to.
struct Block {
  std::vector<std::unique_ptr<Fiber>> fibers;  // (threads of the largest block run so far)
  std::vector<WarpState> warps;                // (threads / 32)
  Barrier block_bar;
  unsigned threads = 0, live = 0;              // threads of this block; those not yet returned
  const Launch* launch = nullptr;
  Context worker;

  ~Block() {
    for (auto& f : fibers) munmap(f->stack - page(), kStackBytes + page());
  }
  static size_t page() { return static_cast<size_t>(sysconf(_SC_PAGESIZE)); }
};

// The calling OS thread's block and the fiber it is running now.
struct Tls {
  Block* block = nullptr;
  Fiber* cur = nullptr;
};
inline thread_local Tls tls;

inline void fiber_main();

// ---- context switch --------------------------------------------------------------------------
#ifdef DDR_EMU_USE_UCONTEXT
inline void ctx_start(Context& c, Fiber& f) {
  getcontext(&c.uc);
  c.uc.uc_stack.ss_sp = f.stack;
  c.uc.uc_stack.ss_size = kStackBytes;
  c.uc.uc_link = nullptr;  // fiber_main never returns
  makecontext(&c.uc, fiber_main, 0);
}
inline void ctx_switch(Context& from, Context& to) { swapcontext(&from.uc, &to.uc); }
#else
// ddr_emu_switch(save, load): pushes the System V callee-saved registers on the current stack, stores the stack pointer in *save, loads `load` and pops the same
// frame from there. ddr_emu_fiber_start is where a new fiber's first switch "returns" to: it calls
// the function in r13. Weak and hidden: every emulator translation unit carries a copy, the linker
// keeps one. 15 instructions, no system call (ucontext's swapcontext makes one per switch). The
// SSE/x87 control words are not switched: kernels never change rounding or exception modes, and
// ldmxcsr/fldcw cost more than the rest of the switch.
extern "C" void ddr_emu_switch(void** save, void* load);
asm(R"(
  .text
  .weak ddr_emu_switch
  .hidden ddr_emu_switch
  .type ddr_emu_switch, @function
ddr_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size ddr_emu_switch, .-ddr_emu_switch

  .weak ddr_emu_fiber_start
  .hidden ddr_emu_fiber_start
  .type ddr_emu_fiber_start, @function
ddr_emu_fiber_start:
  callq *%r13
  ud2
  .size ddr_emu_fiber_start, .-ddr_emu_fiber_start
)");
extern "C" void ddr_emu_fiber_start();

// A new fiber's stack holds the frame ddr_emu_switch pops: r15..rbp and the "return address"
// ddr_emu_fiber_start, which calls fiber_main (kept in r13) on a 16-byte aligned stack as the ABI
// requires.
inline void ctx_start(Context& c, Fiber& f) {
  uint64_t* top = reinterpret_cast<uint64_t*>((reinterpret_cast<uintptr_t>(f.stack + kStackBytes) & ~uintptr_t{15}) - 16);
  uint64_t* frame = top - 7;  // 7 words: r15, r14, r13, r12, rbx, rbp, return address
  frame[0] = 0;                                                 // r15
  frame[1] = 0;                                                 // r14
  frame[2] = reinterpret_cast<uint64_t>(&fiber_main);           // r13
  frame[3] = 0;                                                 // r12
  frame[4] = 0;                                                 // rbx
  frame[5] = 0;                                                 // rbp
  frame[6] = reinterpret_cast<uint64_t>(&ddr_emu_fiber_start);  // return address
  c.sp = frame;
}
inline void ctx_switch(Context& from, Context& to) { ddr_emu_switch(&from.sp, to.sp); }
#endif

// ---- scheduling inside a block -----------------------------------------------------------------
[[noreturn]] inline void deadlock(const Block& b) {
  unsigned at_block = 0, at_warp = 0, finished = 0;
  for (unsigned i = 0; i < b.threads; ++i) {
    const Fiber& f = *b.fibers[i];
    if (f.done) ++finished;
    else if (f.waiting == &b.block_bar) ++at_block;
    else if (f.waiting) ++at_warp;
  }
  std::fprintf(stderr,
               "host_emu: deadlock in block (%u, %u, %u) of a grid (%u, %u, %u) × block (%u, %u, %u) launch: "
               "%u threads wait at __syncthreads, %u at a warp barrier (shuffle, __syncwarp), %u have returned. "
               "A thread returned early or skipped a barrier the others reached (see the rules in "
               "cuda/host_emu.h).\n",
               blockIdx.x, blockIdx.y, blockIdx.z, gridDim.x, gridDim.y, gridDim.z, blockDim.x, blockDim.y,
               blockDim.z, at_block, at_warp, finished);
  std::abort();
}

// Hands the worker to the next fiber after `me` (round robin) that can run. Fibers run in index
// order between barriers, so the next one is almost always me.id + 1.
inline void switch_away(Block& b, Fiber& me) {
  unsigned i = me.id;
  for (unsigned k = 1; k <= b.threads; ++k) {
    if (++i == b.threads) i = 0;
    Fiber& f = *b.fibers[i];
    if (f.waiting == nullptr && !f.done) {
      tls.cur = &f;
      threadIdx = f.tid;
      ctx_switch(me.ctx, f.ctx);
      return;  // resumed: whoever switched back set tls.cur and threadIdx
    }
  }
  deadlock(b);
}

// A fiber's arrival at `bar`: the last one releases the others and runs on; the rest switch away.
inline void arrive(Barrier& bar) {
  Block& b = *tls.block;
  Fiber& me = *tls.cur;
  if (++bar.arrived == bar.count) {
    bar.arrived = 0;
    for (unsigned i = bar.first; i < bar.first + bar.count; ++i) b.fibers[i]->waiting = nullptr;
    return;
  }
  me.waiting = &bar;
  switch_away(b, me);
}

// Every fiber's life: run the kernel once for its thread, then give the worker to a fiber still
// running, or back to the worker when it was the last.
inline void fiber_main() {
  Block& b = *tls.block;
  b.launch->body();
  Fiber& me = *tls.cur;
  me.done = true;
  if (--b.live == 0) {
    tls.cur = nullptr;
    ctx_switch(me.ctx, b.worker);
  } else {
    switch_away(b, me);
  }
  std::abort();  // a finished fiber is never resumed
}

inline unsigned char* new_stack() {
  const size_t page = Block::page();
  void* m = mmap(nullptr, kStackBytes + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                 -1, 0);
  if (m == MAP_FAILED) {
    std::fprintf(stderr, "host_emu: cannot map a %zu KiB fiber stack\n", kStackBytes / 1024);
    std::abort();
  }
  mprotect(m, page, PROT_NONE);
  return static_cast<unsigned char*>(m) + page;
}

// Runs block `linear` of launch L to completion on the calling OS thread.
inline void run_block(Block& b, const Launch& L, uint64_t linear) {
  const unsigned n = L.threads;
  while (b.fibers.size() < n) {
    b.fibers.push_back(std::make_unique<Fiber>());
    b.fibers.back()->stack = new_stack();
  }
  b.warps.resize(n / kWarp);
  b.threads = n;
  b.live = n;
  b.launch = &L;
  b.block_bar = Barrier{0, n, 0};
  for (unsigned w = 0; w < n / kWarp; ++w) b.warps[w].bar = Barrier{w * kWarp, kWarp, 0};
  for (unsigned i = 0; i < n; ++i) {
    Fiber& f = *b.fibers[i];
    f.tid = dim3(i % L.block.x, (i / L.block.x) % L.block.y, i / (L.block.x * L.block.y));
    f.id = i;
    f.lane = i % kWarp;
    f.shuffles = 0;
    f.waiting = nullptr;
    f.done = false;
    ctx_start(f.ctx, f);
  }
  const uint64_t gx = L.grid.x, gy = L.grid.y;
  blockIdx = dim3(static_cast<unsigned>(linear % gx), static_cast<unsigned>((linear / gx) % gy),
                  static_cast<unsigned>(linear / (gx * gy)));
  blockDim = L.block;
  gridDim = L.grid;
  tls.block = &b;
  tls.cur = b.fibers[0].get();
  threadIdx = b.fibers[0]->tid;
  ctx_switch(b.worker, b.fibers[0]->ctx);
  tls.block = nullptr;
}

// Takes unclaimed blocks of L until none is left.
inline void work(Launch& L) {
  static thread_local Block block;
  for (uint64_t i = L.next.fetch_add(1); i < L.blocks; i = L.next.fetch_add(1)) run_block(block, L, i);
}

// ---- workers -----------------------------------------------------------------------------------
// The calling thread plus helpers, one per further host core (DDR_EMU_THREADS=N: N in all).
class Pool {
 public:
  Pool() {
    unsigned n = std::max(1u, std::thread::hardware_concurrency());
    if (const char* e = std::getenv("DDR_EMU_THREADS")) n = std::max(1, std::atoi(e));
    for (unsigned id = 0; id + 1 < n; ++id) helpers_.emplace_back([this, id] { helper(id); });
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> lk(m_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : helpers_) t.join();
  }

  void run(Launch& L) {
    std::lock_guard<std::mutex> one_launch_at_a_time(launch_m_);
    const unsigned wanted =
        static_cast<unsigned>(std::min<uint64_t>(helpers_.size(), L.blocks - 1));  // the caller takes one
    if (wanted > 0) {
      std::lock_guard<std::mutex> lk(m_);
      job_ = &L;
      wanted_ = wanted;
      remaining_ = wanted;
      ++generation_;
      cv_.notify_all();
    }
    work(L);
    if (wanted > 0) {
      std::unique_lock<std::mutex> lk(m_);
      done_cv_.wait(lk, [this] { return remaining_ == 0; });
      job_ = nullptr;
    }
  }

 private:
  void helper(unsigned id) {
    uint64_t seen = 0;
    std::unique_lock<std::mutex> lk(m_);
    for (;;) {
      cv_.wait(lk, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      if (id >= wanted_) continue;  // a launch with fewer blocks than workers
      Launch* L = job_;
      lk.unlock();
      work(*L);
      lk.lock();
      if (--remaining_ == 0) done_cv_.notify_one();
    }
  }

  std::mutex launch_m_;
  std::mutex m_;
  std::condition_variable cv_, done_cv_;
  std::vector<std::thread> helpers_;
  Launch* job_ = nullptr;
  uint64_t generation_ = 0;
  unsigned wanted_ = 0, remaining_ = 0;
  bool stop_ = false;
};

inline Pool& pool() {
  static Pool p;
  return p;
}

}  // namespace ddr_emu
