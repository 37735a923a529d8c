// Data-parallel collectives over Open MPI, loaded at run time with dlopen (libmpi.so.40), never linked: the
// addon builds and runs where MPI is not installed, and only a multi-process run needs it. Resolves the few
// entry points the trainer uses (init, rank, size, all-reduce, barrier, abort, finalize) and Open MPI's
// predefined handles, which are addresses of global objects in libmpi (MPI_COMM_WORLD = &ompi_mpi_comm_world,
// MPI_FLOAT = &ompi_mpi_float, MPI_DOUBLE = &ompi_mpi_double, MPI_SUM = &ompi_mpi_op_sum).
// Only the thread that called pt_mpi_init calls MPI (MPI_THREAD_FUNNELED). Not here: who reads which rows,
// and what is reduced when (src/parallel).
#include <dlfcn.h>
#include <omp.h>
#include <cstdlib>
#include <string>
#include <vector>
#include "preftune.h"
#include "common.h"

namespace {

using Handle = void*;   // MPI_Comm, MPI_Datatype, MPI_Op: pointers in Open MPI's ABI
constexpr int MPI_SUCCESS_ = 0, MPI_THREAD_FUNNELED_ = 1;
void* const MPI_IN_PLACE_ = (void*)1;

struct Mpi {
  void* lib = nullptr;
  int (*Initialized)(int*) = nullptr;
  int (*Finalized)(int*) = nullptr;
  int (*Init_thread)(int*, char***, int, int*) = nullptr;
  int (*Comm_rank)(Handle, int*) = nullptr;
  int (*Comm_size)(Handle, int*) = nullptr;
  int (*Allreduce)(const void*, void*, int, Handle, Handle, Handle) = nullptr;
  int (*Barrier)(Handle) = nullptr;
  int (*Abort)(Handle, int) = nullptr;
  int (*Finalize)() = nullptr;
  int (*Iallreduce)(const void*, void*, int, Handle, Handle, Handle, Handle*) = nullptr;
  int (*Testall)(int, Handle*, int*, void*) = nullptr;
  int (*Waitall)(int, Handle*, void*) = nullptr;
  Handle world = nullptr, f32 = nullptr, f64 = nullptr, sum = nullptr;
  bool active = false;    // initialized by us and not finalized
  int rank = 0, size = 1;
};
Mpi g;

// The all-reduce started during a backward (pt_mpi_overlap_begin … _end): one request per layer range.
struct Overlap {
  bool armed = false;
  float* buf = nullptr;
  std::vector<int64_t> ranges;     // (L, 2): [start, end) of layer l's gradients in buf
  std::vector<Handle> requests;    // MPI_Request of every all-reduce started, in order (MPI_Testall sets the
                                   // completed ones to MPI_REQUEST_NULL, which MPI_Waitall accepts)
  std::vector<char> started;       // per layer
  int error = 0;                   // the first MPI error of a started all-reduce
};
Overlap ov;

pt_status fail(const std::string& msg) { return pt::set_error(PT_ERR_STATE, msg); }

template <class F>
bool sym(void* lib, const char* name, F& out, std::string& missing) {
  out = reinterpret_cast<F>(dlsym(lib, name));
  if (!out) missing += missing.empty() ? name : std::string(", ") + name;
  return out != nullptr;
}

pt_status check(int rc, const char* what) {
  if (rc == MPI_SUCCESS_) return PT_OK;
  return fail(std::string(what) + " failed with MPI error " + std::to_string(rc));
}

pt_status need_active(const char* what) {
  if (g.active) return PT_OK;
  return fail(std::string(what) + ": MPI is not initialized (call pt_mpi_init first)");
}

// Starts layer l's all-reduce (once), then lets MPI progress the ones already started: Open MPI moves a
// non-blocking collective forward only inside MPI calls, so each layer boundary is such a call.
void start_layer(int l) {
  if (ov.started[l]) return;
  ov.started[l] = 1;
  const int64_t a = ov.ranges[2 * l], b = ov.ranges[2 * l + 1];
  if (b > a && !ov.error) {
    Handle req = nullptr;
    ov.error = g.Iallreduce(MPI_IN_PLACE_, ov.buf + a, (int)(b - a), g.f32, g.sum, g.world, &req);
    if (!ov.error) ov.requests.push_back(req);
  }
  int done = 0;
  if (!ov.error && !ov.requests.empty()) g.Testall((int)ov.requests.size(), ov.requests.data(), &done, nullptr);   // MPI_STATUSES_IGNORE
}

}  // namespace

void pt::layer_grads_ready(int layer) {
  if (ov.armed && layer >= 0 && layer < (int)ov.started.size()) start_layer(layer);
}

extern "C" {

pt_status pt_mpi_init(const char* lib_path, int32_t* rank, int32_t* size) {
  if (g.active) { *rank = g.rank; *size = g.size; return PT_OK; }
  const char* path = lib_path && *lib_path ? lib_path : "libmpi.so.40";
  if (!g.lib) {
    // RTLD_GLOBAL: Open MPI's own plugins (mca components) resolve libmpi's symbols from the global scope.
    g.lib = dlopen(path, RTLD_NOW | RTLD_GLOBAL);
    if (!g.lib) return fail(std::string("cannot load the MPI library ") + path + " (" + dlerror() + ")");
  }
  std::string missing;
  sym(g.lib, "MPI_Initialized", g.Initialized, missing);
  sym(g.lib, "MPI_Finalized", g.Finalized, missing);
  sym(g.lib, "MPI_Init_thread", g.Init_thread, missing);
  sym(g.lib, "MPI_Comm_rank", g.Comm_rank, missing);
  sym(g.lib, "MPI_Comm_size", g.Comm_size, missing);
  sym(g.lib, "MPI_Allreduce", g.Allreduce, missing);
  sym(g.lib, "MPI_Barrier", g.Barrier, missing);
  sym(g.lib, "MPI_Abort", g.Abort, missing);
  sym(g.lib, "MPI_Finalize", g.Finalize, missing);
  sym(g.lib, "MPI_Iallreduce", g.Iallreduce, missing);
  sym(g.lib, "MPI_Testall", g.Testall, missing);
  sym(g.lib, "MPI_Waitall", g.Waitall, missing);
  sym(g.lib, "ompi_mpi_comm_world", g.world, missing);
  sym(g.lib, "ompi_mpi_float", g.f32, missing);
  sym(g.lib, "ompi_mpi_double", g.f64, missing);
  sym(g.lib, "ompi_mpi_op_sum", g.sum, missing);
  if (!missing.empty())
    return fail(std::string(path) + " is not Open MPI's libmpi (missing " + missing + "); preftune needs Open MPI 4 or later");
  int done = 0;
  g.Finalized(&done);
  if (done) return fail("MPI was already finalized in this process; it cannot be initialized again");
  int inited = 0;
  g.Initialized(&inited);
  if (!inited) {
    int provided = 0;
    if (pt_status s = check(g.Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED_, &provided), "MPI_Init_thread")) return s;
    if (provided < MPI_THREAD_FUNNELED_) return fail("MPI_Init_thread: the MPI library does not offer MPI_THREAD_FUNNELED");
  }
  if (pt_status s = check(g.Comm_rank(g.world, &g.rank), "MPI_Comm_rank")) return s;
  if (pt_status s = check(g.Comm_size(g.world, &g.size), "MPI_Comm_size")) return s;
  g.active = true;
  *rank = g.rank;
  *size = g.size;
  return PT_OK;
}

// In place, bucket floats per MPI call (<= 0: one call per 2^30 floats, MPI counts are int).
pt_status pt_mpi_allreduce_sum_f32(float* buf, int64_t n, int64_t bucket) {
  if (pt_status s = need_active("pt_mpi_allreduce_sum_f32")) return s;
  if (n < 0) return pt::set_error(PT_ERR_ARGUMENT, "pt_mpi_allreduce_sum_f32: n < 0");
  const int64_t step = bucket > 0 && bucket < (int64_t(1) << 30) ? bucket : (int64_t(1) << 30);
  for (int64_t o = 0; o < n; o += step) {
    const int cnt = (int)std::min<int64_t>(step, n - o);
    if (pt_status s = check(g.Allreduce(MPI_IN_PLACE_, buf + o, cnt, g.f32, g.sum, g.world), "MPI_Allreduce")) return s;
  }
  return PT_OK;
}

pt_status pt_mpi_allreduce_sum_f64(double* buf, int64_t n) {
  if (pt_status s = need_active("pt_mpi_allreduce_sum_f64")) return s;
  if (n < 0 || n >= (int64_t(1) << 30)) return pt::set_error(PT_ERR_ARGUMENT, "pt_mpi_allreduce_sum_f64: n out of range");
  return check(g.Allreduce(MPI_IN_PLACE_, buf, (int)n, g.f64, g.sum, g.world), "MPI_Allreduce");
}

pt_status pt_mpi_overlap_begin(float* buf, const int64_t* ranges, int32_t layers) {
  if (pt_status s = need_active("pt_mpi_overlap_begin")) return s;
  if (ov.armed) return fail("pt_mpi_overlap_begin: an overlapped all-reduce is already under way");
  for (int32_t l = 0; l < layers; l++)
    if (ranges[2 * l] < 0 || ranges[2 * l + 1] < ranges[2 * l] || ranges[2 * l + 1] - ranges[2 * l] >= (int64_t(1) << 31))
      return pt::set_error(PT_ERR_ARGUMENT, "pt_mpi_overlap_begin: layer " + std::to_string(l) + "'s range is not [start, end) of at most 2^31 - 1 floats");
  ov.buf = buf;
  ov.ranges.assign(ranges, ranges + 2 * (size_t)layers);
  ov.requests.clear();
  ov.started.assign(layers, 0);
  ov.error = 0;
  ov.armed = true;
  return PT_OK;
}

pt_status pt_mpi_overlap_end(const int64_t* rest, int32_t n_rest, int64_t bucket, int32_t* during_backward) {
  if (pt_status s = need_active("pt_mpi_overlap_end")) return s;
  if (!ov.armed) return fail("pt_mpi_overlap_end without pt_mpi_overlap_begin");
  int32_t early = 0;
  for (char c : ov.started) early += c;
  if (during_backward) *during_backward = early;
  for (int l = (int)ov.started.size() - 1; l >= 0; l--) start_layer(l);   // a backward that did not run, or stopped early
  ov.armed = false;
  if (ov.error) return check(ov.error, "MPI_Iallreduce");
  if (!ov.requests.empty())
    if (pt_status s = check(g.Waitall((int)ov.requests.size(), ov.requests.data(), nullptr), "MPI_Waitall")) return s;
  for (int32_t i = 0; i < n_rest; i++)
    if (pt_status s = pt_mpi_allreduce_sum_f32(ov.buf + rest[2 * i], rest[2 * i + 1] - rest[2 * i], bucket)) return s;
  return PT_OK;
}

pt_status pt_mpi_barrier(void) {
  if (pt_status s = need_active("pt_mpi_barrier")) return s;
  return check(g.Barrier(g.world), "MPI_Barrier");
}

void pt_mpi_abort(int32_t code) {
  if (g.active) g.Abort(g.world, code);
  std::_Exit(code);   // MPI_Abort does not return; without MPI there is nobody to tell
}

pt_status pt_mpi_finalize(void) {
  if (!g.active) return PT_OK;
  g.active = false;
  return check(g.Finalize(), "MPI_Finalize");
}

}  // extern "C"
