// Interlock's native addon: load the BPF object, attach and pin its programs on a
// cgroup, detach them, and read/write the pinned maps. Nothing here decides
// anything; the TypeScript side owns every policy and every map layout but the
// one in bpf/interlock.h.
#include <napi.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <stdarg.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <map>
#include <string>
#include <vector>

#include "interlock.h"
#include "interlock.skel.h"
#include <cstddef>

// the TypeScript decoder (src/interception/layout.ts) reads these sizes and offsets
static_assert(sizeof(struct il_origin) == 56, "il_origin layout");
static_assert(sizeof(struct il_allow_key) == 24, "il_allow_key layout");
static_assert(sizeof(struct il_event) == 168, "il_event layout");
static_assert(offsetof(struct il_event, path) == 56, "il_event layout");

namespace {

// libbpf explains most failures only through its print callback: keep the tail.
std::string libbpf_log;

int CaptureLibbpfLog(enum libbpf_print_level level, const char* fmt, va_list args) {
  if (level == LIBBPF_DEBUG) return 0;
  char line[1024];
  vsnprintf(line, sizeof(line), fmt, args);
  libbpf_log += line;
  if (libbpf_log.size() > 4096) libbpf_log.erase(0, libbpf_log.size() - 4096);
  return 0;
}

Napi::Error ErrnoError(Napi::Env env, const std::string& what, int err) {
  if (err < 0) err = -err;
  std::string msg = what + ": " + strerror(err);
  if (!libbpf_log.empty()) {
    msg += "\nlibbpf: " + libbpf_log;
    libbpf_log.clear();
  }
  Napi::Error e = Napi::Error::New(env, msg);
  const char* name = err == EPERM    ? "EPERM"
                     : err == EACCES ? "EACCES"
                     : err == ENOENT ? "ENOENT"
                     : err == EINVAL ? "EINVAL"
                     : err == ENOTSUP || err == EOPNOTSUPP ? "ENOTSUP"
                     : err == EEXIST ? "EEXIST"
                                     : "EBPF";
  e.Set("code", Napi::String::New(env, name));
  e.Set("errno", Napi::Number::New(env, err));
  return e;
}

struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  ~Fd() {
    if (fd >= 0) close(fd);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
};

bool IsBpffs(const std::string& path) {
  struct statfs st;
  return statfs(path.c_str(), &st) == 0 && st.f_type == BPF_FS_MAGIC;
}

// ensureBpffs(dir): mount bpffs at dir unless it is there already. Returns true if it mounted.
Napi::Value EnsureBpffs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string dir = info[0].As<Napi::String>();
  if (IsBpffs(dir)) return Napi::Boolean::New(env, false);
  mkdir(dir.c_str(), 0700);
  if (mount("bpf", dir.c_str(), "bpf", 0, "mode=0700") != 0)
    throw ErrnoError(env, "mounting bpffs at " + dir, errno);
  return Napi::Boolean::New(env, true);
}

// activeLsms() → the kernel's active LSMs ("lockdown,capability,...,bpf"), mounting
// securityfs first if nobody has; "" when it cannot be read.
Napi::Value ActiveLsms(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* file = "/sys/kernel/security/lsm";
  if (access(file, R_OK) != 0) mount("securityfs", "/sys/kernel/security", "securityfs", 0, nullptr);
  Fd fd(open(file, O_RDONLY));
  if (fd.fd < 0) return Napi::String::New(env, "");
  char buf[512];
  ssize_t n = read(fd.fd, buf, sizeof(buf) - 1);
  return Napi::String::New(env, n > 0 ? std::string(buf, n) : "");
}

std::string LinkPinPath(const std::string& pin_dir, const char* prog_name) {
  return pin_dir + "/link_" + prog_name;
}

// The pinned link's cgroup id, or 0 when the pin is not a cgroup link we can read.
uint64_t PinnedLinkCgroup(int link_fd) {
  struct bpf_link_info li;
  uint32_t len = sizeof(li);
  memset(&li, 0, sizeof(li));
  if (bpf_obj_get_info_by_fd(link_fd, &li, &len) != 0) return 0;
  if (li.type != BPF_LINK_TYPE_CGROUP) return 0;
  return li.cgroup.cgroup_id;
}

// BPF_CGROUP_UNIX_CONNECT (kernel 6.7): newer than the uapi headers libbpf-dev may ship
constexpr int kAttachCgroupUnixConnect = 49;

// Sections the build's libbpf may not know: the loader sets their types itself.
void TypeUnknownSections(struct bpf_object* obj) {
  struct bpf_program* prog;
  bpf_object__for_each_program(prog, obj) {
    if (strcmp(bpf_program__section_name(prog), "cgroup/connect_unix") == 0) {
      bpf_program__set_type(prog, BPF_PROG_TYPE_CGROUP_SOCK_ADDR);
      bpf_program__set_expected_attach_type(prog, static_cast<enum bpf_attach_type>(kAttachCgroupUnixConnect));
    }
  }
}

// attach(cgroupPath, pinDir, skip) → { cgroupId, created, updated }
// skip: names of optional programs this kernel cannot load (the caller retries with them)
// Loads fresh programs, re-using the pinned maps (so flows in flight and the target
// table survive a restart), and either swaps them into the already pinned links
// (no window without redirect) or attaches and pins new links.
Napi::Value Attach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string cgroup_path = info[0].As<Napi::String>();
  std::string pin_dir = info[1].As<Napi::String>();
  std::vector<std::string> skip;
  if (info.Length() > 2 && info[2].IsArray()) {
    Napi::Array a = info[2].As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); i++) skip.push_back(a.Get(i).As<Napi::String>());
  }

  struct stat cst;
  if (stat(cgroup_path.c_str(), &cst) != 0) throw ErrnoError(env, "cgroup " + cgroup_path, errno);
  uint64_t cgroup_id = cst.st_ino;
  Fd cg(open(cgroup_path.c_str(), O_RDONLY | O_DIRECTORY));
  if (cg.fd < 0) throw ErrnoError(env, "opening cgroup " + cgroup_path, errno);
  if (mkdir(pin_dir.c_str(), 0700) != 0 && errno != EEXIST)
    throw ErrnoError(env, "creating pin directory " + pin_dir, errno);

  libbpf_log.clear();
  struct interlock* skel = interlock__open();
  if (!skel) throw ErrnoError(env, "opening the BPF object", errno);
  struct bpf_map* map;
  bpf_object__for_each_map(map, skel->obj) {
    // .rodata and friends are frozen per load: re-using a pinned one fails
    if (bpf_map__is_internal(map)) continue;
    std::string path = pin_dir + "/" + bpf_map__name(map);
    bpf_map__set_pin_path(map, path.c_str());
  }
  struct bpf_program* prog;
  bpf_object__for_each_program(prog, skel->obj) {
    for (auto& name : skip)
      if (name == bpf_program__name(prog)) bpf_program__set_autoload(prog, false);
  }
  TypeUnknownSections(skel->obj);
  int err = interlock__load(skel);
  if (err) {
    interlock__destroy(skel);
    throw ErrnoError(env, "loading the BPF programs (pinned maps of another version? run `interlock detach`)", err);
  }

  int created = 0, updated = 0;
  bpf_object__for_each_program(prog, skel->obj) {
    if (!bpf_program__autoload(prog)) continue;
    std::string pin = LinkPinPath(pin_dir, bpf_program__name(prog));
    Fd old(bpf_obj_get(pin.c_str()));
    if (old.fd >= 0 && PinnedLinkCgroup(old.fd) == cgroup_id &&
        bpf_link_update(old.fd, bpf_program__fd(prog), nullptr) == 0) {
      updated++;
      continue;
    }
    // A new link first, then drop the old pin: redirection never has a gap.
    struct bpf_link* link = bpf_program__attach_cgroup(prog, cg.fd);
    if (!link) {
      int e = errno;
      interlock__destroy(skel);
      throw ErrnoError(env, std::string("attaching ") + bpf_program__name(prog) + " to " + cgroup_path, e);
    }
    if (old.fd >= 0) unlink(pin.c_str());
    err = bpf_link__pin(link, pin.c_str());
    if (err) {
      bpf_link__destroy(link);
      interlock__destroy(skel);
      throw ErrnoError(env, "pinning link at " + pin, err);
    }
    bpf_link__destroy(link);  // closes our fd only: the pin keeps the link attached
    created++;
  }
  interlock__destroy(skel);

  Napi::Object out = Napi::Object::New(env);
  out.Set("cgroupId", Napi::BigInt::New(env, static_cast<uint64_t>(cgroup_id)));
  out.Set("created", Napi::Number::New(env, created));
  out.Set("updated", Napi::Number::New(env, updated));
  return out;
}

// links(pinDir) → [{ name, linkId, progId, cgroupId }] for each pinned link
Napi::Value Links(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string pin_dir = info[0].As<Napi::String>();
  Napi::Array out = Napi::Array::New(env);
  DIR* d = opendir(pin_dir.c_str());
  if (!d) {
    if (errno == ENOENT) return out;
    throw ErrnoError(env, "reading " + pin_dir, errno);
  }
  uint32_t i = 0;
  while (struct dirent* de = readdir(d)) {
    if (strncmp(de->d_name, "link_", 5) != 0) continue;
    std::string path = pin_dir + "/" + de->d_name;
    Fd fd(bpf_obj_get(path.c_str()));
    if (fd.fd < 0) continue;
    struct bpf_link_info li;
    uint32_t len = sizeof(li);
    memset(&li, 0, sizeof(li));
    if (bpf_obj_get_info_by_fd(fd.fd, &li, &len) != 0) continue;
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", Napi::String::New(env, de->d_name + 5));
    o.Set("linkId", Napi::Number::New(env, li.id));
    o.Set("progId", Napi::Number::New(env, li.prog_id));
    o.Set("cgroupId", Napi::BigInt::New(env, static_cast<uint64_t>(li.type == BPF_LINK_TYPE_CGROUP ? li.cgroup.cgroup_id : 0)));
    out.Set(i++, o);
  }
  closedir(d);
  return out;
}

// Open pinned maps once; the daemon touches the flow map on every accept.
std::map<std::string, int> map_fds;

int MapFd(Napi::Env env, const std::string& path) {
  auto it = map_fds.find(path);
  if (it != map_fds.end()) return it->second;
  int fd = bpf_obj_get(path.c_str());
  if (fd < 0) throw ErrnoError(env, "opening pinned map " + path, errno);
  map_fds[path] = fd;
  return fd;
}

// detach(pinDir) → number of pins removed. Unpinning drops the last reference to
// each link, which detaches its program from the cgroup.
Napi::Value Detach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string pin_dir = info[0].As<Napi::String>();
  for (auto& kv : map_fds) close(kv.second);
  map_fds.clear();
  DIR* d = opendir(pin_dir.c_str());
  if (!d) {
    if (errno == ENOENT) return Napi::Number::New(env, 0);
    throw ErrnoError(env, "reading " + pin_dir, errno);
  }
  std::vector<std::string> names;
  while (struct dirent* de = readdir(d))
    if (de->d_name[0] != '.') names.push_back(de->d_name);
  closedir(d);
  // links first, so no program runs against a map that is going away
  int removed = 0;
  for (int pass = 0; pass < 2; pass++)
    for (auto& n : names) {
      bool is_link = n.rfind("link_", 0) == 0;
      if (is_link != (pass == 0)) continue;
      std::string path = pin_dir + "/" + n;
      if (unlink(path.c_str()) != 0) throw ErrnoError(env, "unpinning " + path, errno);
      removed++;
    }
  rmdir(pin_dir.c_str());
  return Napi::Number::New(env, removed);
}

Napi::Buffer<uint8_t> BufferArg(const Napi::CallbackInfo& info, size_t i) {
  return info[i].As<Napi::Buffer<uint8_t>>();
}

// mapUpdate(mapPath, key, value)
Napi::Value MapUpdate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = MapFd(env, info[0].As<Napi::String>());
  auto key = BufferArg(info, 1), value = BufferArg(info, 2);
  if (bpf_map_update_elem(fd, key.Data(), value.Data(), BPF_ANY) != 0)
    throw ErrnoError(env, "updating map " + info[0].As<Napi::String>().Utf8Value(), errno);
  return env.Undefined();
}

// mapDelete(mapPath, key) → whether it was there
Napi::Value MapDelete(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = MapFd(env, info[0].As<Napi::String>());
  auto key = BufferArg(info, 1);
  if (bpf_map_delete_elem(fd, key.Data()) == 0) return Napi::Boolean::New(env, true);
  if (errno == ENOENT) return Napi::Boolean::New(env, false);
  throw ErrnoError(env, "deleting from map", errno);
}

// The value under key, or null: shared by mapLookup and mapTake.
Napi::Value LookupValue(const Napi::CallbackInfo& info, int fd) {
  Napi::Env env = info.Env();
  auto key = BufferArg(info, 1);
  uint32_t value_size = info[2].As<Napi::Number>().Uint32Value();
  Napi::Buffer<uint8_t> value = Napi::Buffer<uint8_t>::New(env, value_size);
  if (bpf_map_lookup_elem(fd, key.Data(), value.Data()) != 0) {
    if (errno == ENOENT) return env.Null();
    throw ErrnoError(env, "looking up map", errno);
  }
  return value;
}

// mapTake(mapPath, key, valueSize) → the value (deleted from the map) or null
Napi::Value MapTake(const Napi::CallbackInfo& info) {
  int fd = MapFd(info.Env(), info[0].As<Napi::String>());
  Napi::Value value = LookupValue(info, fd);
  if (!value.IsNull()) bpf_map_delete_elem(fd, BufferArg(info, 1).Data());
  return value;
}

// mapKeys(mapPath, keySize) → Buffer[] of every key (bounded by the map's size)
Napi::Value MapKeys(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = MapFd(env, info[0].As<Napi::String>());
  uint32_t key_size = info[1].As<Napi::Number>().Uint32Value();
  Napi::Array out = Napi::Array::New(env);
  std::vector<uint8_t> prev(key_size), next(key_size);
  void* cursor = nullptr;
  uint32_t i = 0;
  while (bpf_map_get_next_key(fd, cursor, next.data()) == 0) {
    out.Set(i++, Napi::Buffer<uint8_t>::Copy(env, next.data(), key_size));
    prev = next;
    cursor = prev.data();
    if (i > 1 << 20) break;
  }
  return out;
}

// Ring buffers the daemon drains: id → the reader and what it has read so far.
struct EventReader {
  struct ring_buffer* ring = nullptr;
  std::vector<std::string> pending;
  size_t max = 0;
};
std::map<int, EventReader*> readers;
int next_reader = 1;

int CollectEvent(void* ctx, void* data, size_t size) {
  auto* r = static_cast<EventReader*>(ctx);
  r->pending.emplace_back(static_cast<const char*>(data), size);
  return r->pending.size() >= r->max ? -1 : 0;  // a negative return stops this pass (the record is kept)
}

// eventsOpen(mapPath) → a reader id for the pinned ring buffer
Napi::Value EventsOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = MapFd(env, info[0].As<Napi::String>());
  auto* r = new EventReader();
  r->ring = ring_buffer__new(fd, CollectEvent, r, nullptr);
  if (!r->ring) {
    int e = errno;
    delete r;
    throw ErrnoError(env, "opening ring buffer " + info[0].As<Napi::String>().Utf8Value(), e);
  }
  int id = next_reader++;
  readers[id] = r;
  return Napi::Number::New(env, id);
}

// eventsDrain(id, max) → Buffer[]: up to max records, without blocking
Napi::Value EventsDrain(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto it = readers.find(info[0].As<Napi::Number>().Int32Value());
  if (it == readers.end()) throw Napi::Error::New(env, "no such event reader");
  EventReader* r = it->second;
  r->max = info[1].As<Napi::Number>().Uint32Value();
  r->pending.clear();
  int n = ring_buffer__consume(r->ring);
  if (n < 0 && r->pending.empty()) throw ErrnoError(env, "reading ring buffer", n);
  Napi::Array out = Napi::Array::New(env, r->pending.size());
  for (uint32_t i = 0; i < r->pending.size(); i++)
    out.Set(i, Napi::Buffer<uint8_t>::Copy(env, reinterpret_cast<const uint8_t*>(r->pending[i].data()), r->pending[i].size()));
  r->pending.clear();
  return out;
}

// eventsClose(id)
Napi::Value EventsClose(const Napi::CallbackInfo& info) {
  auto it = readers.find(info[0].As<Napi::Number>().Int32Value());
  if (it != readers.end()) {
    ring_buffer__free(it->second->ring);
    delete it->second;
    readers.erase(it);
  }
  return info.Env().Undefined();
}

// mapLookup(mapPath, key, valueSize) → the value or null
Napi::Value MapLookup(const Napi::CallbackInfo& info) {
  return LookupValue(info, MapFd(info.Env(), info[0].As<Napi::String>()));
}

// Whether the kernel loads a BPF LSM program at all: the LSM list may name bpf while
// loading is still refused (a lockdown policy, a sandbox). 0 or -errno.
int ProbeLsmLoad() {
  int btf_id = libbpf_find_vmlinux_btf_id("socket_create", BPF_LSM_MAC);
  if (btf_id < 0) return btf_id;
  struct bpf_insn insns[2];
  memset(insns, 0, sizeof(insns));
  insns[0].code = BPF_ALU64 | BPF_MOV | BPF_K;  // r0 = 0: allow
  insns[0].dst_reg = BPF_REG_0;
  insns[1].code = BPF_JMP | BPF_EXIT;
  LIBBPF_OPTS(bpf_prog_load_opts, opts, .expected_attach_type = BPF_LSM_MAC, .attach_btf_id = static_cast<__u32>(btf_id));
  int fd = bpf_prog_load(BPF_PROG_TYPE_LSM, "il_probe", "GPL", insns, 2, &opts);
  if (fd < 0) return -errno;
  close(fd);
  return 0;
}

// probe() → which program types this kernel loads
Napi::Value Probe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  out.Set("cgroupSockAddr", Napi::Boolean::New(env, libbpf_probe_bpf_prog_type(BPF_PROG_TYPE_CGROUP_SOCK_ADDR, nullptr) == 1));
  out.Set("sockOps", Napi::Boolean::New(env, libbpf_probe_bpf_prog_type(BPF_PROG_TYPE_SOCK_OPS, nullptr) == 1));
  out.Set("lruHash", Napi::Boolean::New(env, libbpf_probe_bpf_map_type(BPF_MAP_TYPE_LRU_HASH, nullptr) == 1));
  int lsm = ProbeLsmLoad();
  out.Set("lsmPrograms", lsm == 0 ? Napi::String::New(env, "yes") : Napi::String::New(env, strerror(-lsm)));
  return out;
}

// setParentDeathSignal(signo): the kernel sends signo when the process that started us exits.
Napi::Value SetParentDeathSignal(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (prctl(PR_SET_PDEATHSIG, info[0].As<Napi::Number>().Int32Value()) != 0)
    throw ErrnoError(env, "prctl(PR_SET_PDEATHSIG)", errno);
  return env.Undefined();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  libbpf_set_print(CaptureLibbpfLog);
  exports.Set("ensureBpffs", Napi::Function::New(env, EnsureBpffs));
  exports.Set("activeLsms", Napi::Function::New(env, ActiveLsms));
  exports.Set("attach", Napi::Function::New(env, Attach));
  exports.Set("detach", Napi::Function::New(env, Detach));
  exports.Set("links", Napi::Function::New(env, Links));
  exports.Set("mapUpdate", Napi::Function::New(env, MapUpdate));
  exports.Set("mapDelete", Napi::Function::New(env, MapDelete));
  exports.Set("mapTake", Napi::Function::New(env, MapTake));
  exports.Set("mapKeys", Napi::Function::New(env, MapKeys));
  exports.Set("mapLookup", Napi::Function::New(env, MapLookup));
  exports.Set("eventsOpen", Napi::Function::New(env, EventsOpen));
  exports.Set("eventsDrain", Napi::Function::New(env, EventsDrain));
  exports.Set("eventsClose", Napi::Function::New(env, EventsClose));
  exports.Set("probe", Napi::Function::New(env, Probe));
  exports.Set("setParentDeathSignal", Napi::Function::New(env, SetParentDeathSignal));
  return exports;
}

}  // namespace

NODE_API_MODULE(interlock, Init)
