// SPDX-License-Identifier: GPL-2.0
/* Interlock's redirect and egress lockdown, attached to the agents' cgroup.
 *
 *  connect4/6   intercepted dst? record origin by socket cookie, rewrite to proxy;
 *               otherwise, in lockdown, refuse what is not allow-listed
 *  sendmsg4/6   in lockdown, refuse UDP datagrams to what is not allow-listed
 *  sock_create  raw sockets always refused; ICMP datagram sockets in lockdown
 *  sock_ops     on ESTABLISHED, re-key the origin by the client's local (ip, port)
 *               (what the proxy sees as the peer); on CLOSE, forget it
 *  getpeername  the client sees the address it dialed, not the proxy's
 *  lsm_cgroup   (where BPF LSM is active) packet sockets, and unix-socket connects
 *               to PostgreSQL's sockets or listed paths, refused
 * Every refusal is reported on the il_events ring buffer for the audit trail.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "interlock.h"

#define AF_UNIX 1
#define AF_INET 2
#define AF_INET6 10
#define AF_PACKET 17
#define IL_IPPROTO_ICMPV6 58
#define IL_LOOPBACK 0x7f000001 /* the proxy listens on 127.0.0.1 */
/* one 32-bit context load each: the verifier rejects the 64-bit loads clang merges them into */
#define CTX_U32(field) (*(volatile __u32 *)&(field))

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, IL_MAX_TARGETS);
	__type(key, struct il_endpoint);
	__type(value, struct il_redirect);
} il_targets SEC(".maps");

/* whole ports intercepted for any address (an unconfigured database is refused, not reached) */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, IL_MAX_PORTS);
	__type(key, __u32);
	__type(value, struct il_redirect);
} il_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, IL_MAX_FLOWS);
	__type(key, __u64); /* socket cookie */
	__type(value, struct il_origin);
} il_sock_origins SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, IL_MAX_FLOWS);
	__type(key, struct il_endpoint); /* the client's local address */
	__type(value, struct il_origin);
} il_flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, IL_MAX_ALLOW);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct il_allow_key);
	__type(value, __u8);
} il_egress_allow SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct il_config);
} il_config SEC(".maps");

/* exact bound names of unix sockets agents may not reach (zero-padded) */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, IL_MAX_UNIX_DENY);
	__type(key, char[IL_UNIX_PATH_LEN]);
	__type(value, __u8);
} il_unix_deny SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, IL_EVENTS_BYTES);
} il_events SEC(".maps");

/* [0]: events lost because the ring buffer was full */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} il_lost_events SEC(".maps");

static __always_inline void map_v4(__u8 addr[16], __u32 ip4_be)
{
	__builtin_memset(addr, 0, 10);
	addr[10] = 0xff;
	addr[11] = 0xff;
	__builtin_memcpy(&addr[12], &ip4_be, 4);
}

static __always_inline struct il_redirect *intercepted(struct il_endpoint *dst)
{
	struct il_redirect *r = bpf_map_lookup_elem(&il_targets, dst);
	if (r)
		return r;
	__u32 port = dst->port;
	return bpf_map_lookup_elem(&il_ports, &port);
}

static __always_inline int lockdown(void)
{
	__u32 zero = 0;
	struct il_config *c = bpf_map_lookup_elem(&il_config, &zero);
	return c && (c->flags & IL_EGRESS_LOCKDOWN);
}

static __always_inline int allowed(struct il_endpoint *dst, __u8 protocol)
{
	struct il_allow_key k = { .prefixlen = 24 + 128 };
	__builtin_memcpy(k.addr, dst->addr, 16);
	/* exact protocol and port, then any port, then any protocol */
	__u8 protos[2] = { protocol, 0 };
	for (int i = 0; i < 2; i++) {
		k.protocol = protos[i];
		k.port_be[0] = dst->port >> 8;
		k.port_be[1] = dst->port & 0xff;
		if (bpf_map_lookup_elem(&il_egress_allow, &k))
			return 1;
		k.port_be[0] = 0;
		k.port_be[1] = 0;
		if (bpf_map_lookup_elem(&il_egress_allow, &k))
			return 1;
	}
	return 0;
}

static __always_inline struct il_event *event_start(__u8 kind)
{
	struct il_event *e = bpf_ringbuf_reserve(&il_events, sizeof(*e), 0);
	if (!e) {
		__u32 zero = 0;
		__u64 *lost = bpf_map_lookup_elem(&il_lost_events, &zero);
		if (lost)
			__sync_fetch_and_add(lost, 1);
		return 0;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->kind = kind;
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	e->pid = pid_tgid >> 32;
	e->uid = (__u32)bpf_get_current_uid_gid();
	e->cgroup_id = bpf_get_current_cgroup_id();
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	return e;
}

/* Refuses (returns 0) and reports a connect or datagram that lockdown does not let out. */
static __always_inline int refuse_egress(__u8 kind, struct il_endpoint *dst, __u8 family, __u8 protocol, __u16 type)
{
	struct il_event *e = event_start(kind);
	if (e) {
		__builtin_memcpy(e->addr, dst->addr, 16);
		e->port = dst->port;
		e->family = family;
		e->protocol = protocol;
		e->sock_type = type;
		bpf_ringbuf_submit(e, 0);
	}
	return 0;
}

static __always_inline int egress(__u8 kind, struct il_endpoint *dst, __u8 family, __u8 protocol, __u16 type)
{
	if (!lockdown() || allowed(dst, protocol))
		return 1;
	return refuse_egress(kind, dst, family, protocol, type);
}

static __always_inline void read_v6(struct bpf_sock_addr *ctx, struct il_endpoint *dst)
{
	/* v4-mapped dials (::ffff:a.b.c.d) produce the same key as connect4 */
	__u32 w0 = CTX_U32(ctx->user_ip6[0]), w1 = CTX_U32(ctx->user_ip6[1]);
	__u32 w2 = CTX_U32(ctx->user_ip6[2]), w3 = CTX_U32(ctx->user_ip6[3]);
	__builtin_memcpy(&dst->addr[0], &w0, 4);
	__builtin_memcpy(&dst->addr[4], &w1, 4);
	__builtin_memcpy(&dst->addr[8], &w2, 4);
	__builtin_memcpy(&dst->addr[12], &w3, 4);
}

/* Returns 1 to let connect() proceed (rewritten or not), 0 to refuse it (EPERM). */
static __always_inline int redirect(struct bpf_sock_addr *ctx, struct il_endpoint *dst, __u8 family)
{
	struct il_redirect *r = intercepted(dst);
	if (!r)
		return 1;

	struct il_origin o = {};
	__builtin_memcpy(o.dst_addr, dst->addr, 16);
	o.dst_port = dst->port;
	o.proxy_port = r->proxy_port;
	o.protocol = r->protocol;
	o.socket_family = family;
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	o.pid = pid_tgid >> 32;
	o.uid = (__u32)bpf_get_current_uid_gid();
	o.cgroup_id = bpf_get_current_cgroup_id();
	bpf_get_current_comm(o.comm, sizeof(o.comm));

	__u64 cookie = bpf_get_socket_cookie(ctx);
	/* no record, no attribution: refuse rather than connect unattributed */
	if (bpf_map_update_elem(&il_sock_origins, &cookie, &o, BPF_ANY))
		return 0;

	if (family == AF_INET) {
		ctx->user_ip4 = bpf_htonl(IL_LOOPBACK);
	} else {
		ctx->user_ip6[0] = 0;
		ctx->user_ip6[1] = 0;
		ctx->user_ip6[2] = bpf_htonl(0x0000ffff);
		ctx->user_ip6[3] = bpf_htonl(IL_LOOPBACK);
	}
	ctx->user_port = bpf_htons(r->proxy_port);
	return 1;
}

SEC("cgroup/connect4")
int il_connect4(struct bpf_sock_addr *ctx)
{
	struct il_endpoint dst = {};
	map_v4(dst.addr, ctx->user_ip4);
	dst.port = bpf_ntohs((__u16)ctx->user_port);
	__u8 protocol = CTX_U32(ctx->protocol);
	__u16 type = CTX_U32(ctx->type);
	if (type == SOCK_STREAM && protocol == IPPROTO_TCP && intercepted(&dst))
		return redirect(ctx, &dst, AF_INET);
	return egress(IL_EV_CONNECT, &dst, AF_INET, protocol, type);
}

SEC("cgroup/connect6")
int il_connect6(struct bpf_sock_addr *ctx)
{
	struct il_endpoint dst = {};
	read_v6(ctx, &dst);
	dst.port = bpf_ntohs((__u16)ctx->user_port);
	__u8 protocol = CTX_U32(ctx->protocol);
	__u16 type = CTX_U32(ctx->type);
	if (type == SOCK_STREAM && protocol == IPPROTO_TCP && intercepted(&dst))
		return redirect(ctx, &dst, AF_INET6);
	return egress(IL_EV_CONNECT, &dst, AF_INET6, protocol, type);
}

/* unconnected UDP (DNS, QUIC, anything): connected sockets were judged at connect */
SEC("cgroup/sendmsg4")
int il_sendmsg4(struct bpf_sock_addr *ctx)
{
	struct il_endpoint dst = {};
	map_v4(dst.addr, ctx->user_ip4);
	dst.port = bpf_ntohs((__u16)ctx->user_port);
	return egress(IL_EV_SENDMSG, &dst, AF_INET, CTX_U32(ctx->protocol), CTX_U32(ctx->type));
}

SEC("cgroup/sendmsg6")
int il_sendmsg6(struct bpf_sock_addr *ctx)
{
	struct il_endpoint dst = {};
	read_v6(ctx, &dst);
	dst.port = bpf_ntohs((__u16)ctx->user_port);
	return egress(IL_EV_SENDMSG, &dst, AF_INET6, CTX_U32(ctx->protocol), CTX_U32(ctx->type));
}

static __always_inline int refuse_socket(__u16 family, __u16 type, __u8 protocol)
{
	struct il_event *e = event_start(IL_EV_SOCKET);
	if (e) {
		e->family = family;
		e->sock_type = type;
		e->protocol = protocol;
		bpf_ringbuf_submit(e, 0);
	}
	return 0;
}

/* raw IP sockets craft any packet, past every hook above: never for agents.
 * ICMP datagram ("ping") sockets have no sendmsg hook, so lockdown refuses them. */
SEC("cgroup/sock_create")
int il_sock_create(struct bpf_sock *ctx)
{
	__u32 family = ctx->family, type = ctx->type, protocol = ctx->protocol;
	if (type == SOCK_RAW)
		return refuse_socket(family, type, protocol);
	if (type == SOCK_DGRAM && (protocol == IPPROTO_ICMP || protocol == IL_IPPROTO_ICMPV6) && lockdown())
		return refuse_socket(family, type, protocol);
	return 1;
}

SEC("sockops")
int il_sockops(struct bpf_sock_ops *skops)
{
	__u64 cookie;
	struct il_origin *o;
	struct il_endpoint local = {};

	switch (skops->op) {
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
		cookie = bpf_get_socket_cookie(skops);
		o = bpf_map_lookup_elem(&il_sock_origins, &cookie);
		if (!o)
			return 1;
		if (skops->family == AF_INET) {
			map_v4(local.addr, skops->local_ip4);
		} else {
			__u32 w0 = CTX_U32(skops->local_ip6[0]), w1 = CTX_U32(skops->local_ip6[1]);
			__u32 w2 = CTX_U32(skops->local_ip6[2]), w3 = CTX_U32(skops->local_ip6[3]);
			__builtin_memcpy(&local.addr[0], &w0, 4);
			__builtin_memcpy(&local.addr[4], &w1, 4);
			__builtin_memcpy(&local.addr[8], &w2, 4);
			__builtin_memcpy(&local.addr[12], &w3, 4);
		}
		local.port = (__u16)skops->local_port;
		bpf_map_update_elem(&il_flows, &local, o, BPF_ANY);
		/* ask for state changes so the records go when the socket does */
		bpf_sock_ops_cb_flags_set(skops, BPF_SOCK_OPS_STATE_CB_FLAG);
		return 1;
	case BPF_SOCK_OPS_STATE_CB:
		if (skops->args[1] != TCP_CLOSE)
			return 1;
		cookie = bpf_get_socket_cookie(skops);
		bpf_map_delete_elem(&il_sock_origins, &cookie);
		return 1;
	}
	return 1;
}

SEC("cgroup/getpeername4")
int il_getpeername4(struct bpf_sock_addr *ctx)
{
	__u64 cookie = bpf_get_socket_cookie(ctx);
	struct il_origin *o = bpf_map_lookup_elem(&il_sock_origins, &cookie);
	if (!o)
		return 1;
	__u32 ip4;
	__builtin_memcpy(&ip4, &o->dst_addr[12], 4);
	ctx->user_ip4 = ip4;
	ctx->user_port = bpf_htons(o->dst_port);
	return 1;
}

SEC("cgroup/getpeername6")
int il_getpeername6(struct bpf_sock_addr *ctx)
{
	__u64 cookie = bpf_get_socket_cookie(ctx);
	struct il_origin *o = bpf_map_lookup_elem(&il_sock_origins, &cookie);
	if (!o)
		return 1;
	__u32 w[4];
	__builtin_memcpy(w, o->dst_addr, 16);
	ctx->user_ip6[0] = w[0];
	ctx->user_ip6[1] = w[1];
	ctx->user_ip6[2] = w[2];
	ctx->user_ip6[3] = w[3];
	ctx->user_port = bpf_htons(o->dst_port);
	return 1;
}

/* Packet sockets are not inet sockets, so cgroup/sock_create never sees them: the
 * LSM hook does (it runs in the creating task's cgroup). */
SEC("lsm_cgroup/socket_create")
int BPF_PROG(il_socket_create, int family, int type, int protocol, int kern)
{
	if (kern)
		return 1;
	if (family == AF_PACKET)
		return refuse_socket(family, type, protocol);
	return 1;
}

/* "/.s.PGSQL.<port>" is PostgreSQL's socket, whatever its directory */
static __always_inline int pg_socket_name(const char *b)
{
	return b[0] == '.' && b[1] == 's' && b[2] == '.' && b[3] == 'P' && b[4] == 'G' && b[5] == 'S' &&
	       b[6] == 'Q' && b[7] == 'L' && b[8] == '.';
}

/* name: NUL-terminated and zero-padded (read with bpf_probe_read_kernel_str), so the
 * listed-path lookup sees exactly what the config wrote */
static __always_inline int denied_unix_name(const char *name)
{
	if (bpf_map_lookup_elem(&il_unix_deny, name))
		return 1;
	if (pg_socket_name(name))
		return 1;
	for (int i = 0; i < IL_UNIX_PATH_LEN - 10; i++) {
		if (name[i] == 0)
			break;
		if (name[i] == '/' && pg_socket_name(name + i + 1))
			return 1;
	}
	return 0;
}

static __always_inline int refuse_unix(const char *name)
{
	struct il_event *e = event_start(IL_EV_UNIX);
	if (e) {
		e->family = AF_UNIX;
		e->sock_type = SOCK_STREAM;
		__builtin_memcpy(e->path, name, IL_UNIX_PATH_LEN);
		bpf_ringbuf_submit(e, 0);
	}
	return 0;
}

extern void *bpf_cast_to_kern_ctx(void *) __ksym;

/* Kernels from 6.7 hook unix connects like inet ones; libbpf learned the section name
 * later than Debian's, so the loader sets the type (see native/addon.cc). This sees
 * the path as the client passed it: relative paths still end in the socket's name, a
 * symlink under another name does not, which is what the LSM hook below is for. */
SEC("cgroup/connect_unix")
int il_connect_unix(struct bpf_sock_addr *ctx)
{
	char name[IL_UNIX_PATH_LEN] = {};
	struct bpf_sock_addr_kern *k = bpf_cast_to_kern_ctx(ctx);
	/* the path is uaddrlen - 2 bytes (minus sun_family), NUL-terminated or not; clients
	 * often pass the whole sockaddr_un */
	__u32 size = (k->uaddrlen - 1) & 0xff;
	if (size > IL_UNIX_PATH_LEN)
		size = IL_UNIX_PATH_LEN;
	if (size < 2)
		return 1;
	bpf_probe_read_kernel_str(name, size, ((struct sockaddr_un *)k->uaddr)->sun_path);
	if (!denied_unix_name(name))
		return 1;
	return refuse_unix(name);
}

SEC("lsm_cgroup/unix_stream_connect")
int BPF_PROG(il_unix_connect, struct sock *sock, struct sock *other, struct sock *newsk)
{
	char name[IL_UNIX_PATH_LEN] = {};
	struct unix_address *addr = BPF_CORE_READ((struct unix_sock *)other, addr);
	if (!addr)
		return 1;
	__u32 size = (BPF_CORE_READ(addr, len) - 1) & 0xff; /* the name, minus sun_family, plus a NUL */
	if (size > IL_UNIX_PATH_LEN)
		size = IL_UNIX_PATH_LEN;
	if (size < 2)
		return 1;
	bpf_probe_read_kernel_str(name, size, &addr->name[0].sun_path);
	if (!denied_unix_name(name))
		return 1;
	return refuse_unix(name);
}

char LICENSE[] SEC("license") = "GPL";
