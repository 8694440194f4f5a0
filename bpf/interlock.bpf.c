// SPDX-License-Identifier: GPL-2.0
/* Interlock's redirect: every TCP connect from the agents' cgroup (and below) to
 * an intercepted destination is rewritten to the local proxy, and who dialed what
 * is recorded so the proxy can attribute the accepted connection.
 *
 *  connect4/6   intercepted dst? record origin by socket cookie, rewrite to proxy
 *  sock_ops     on ESTABLISHED, re-key the origin by the client's local (ip, port)
 *               (what the proxy sees as the peer); on CLOSE, forget it
 *  getpeername  the client sees the address it dialed, not the proxy's
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/socket.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "interlock.h"

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif
#define SOCK_STREAM 1
#define TCP_CLOSE 7
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
	if (ctx->type != SOCK_STREAM || ctx->protocol != IPPROTO_TCP)
		return 1;
	struct il_endpoint dst = {};
	map_v4(dst.addr, ctx->user_ip4);
	dst.port = bpf_ntohs((__u16)ctx->user_port);
	return redirect(ctx, &dst, AF_INET);
}

SEC("cgroup/connect6")
int il_connect6(struct bpf_sock_addr *ctx)
{
	if (ctx->type != SOCK_STREAM || ctx->protocol != IPPROTO_TCP)
		return 1;
	struct il_endpoint dst = {};
	/* v4-mapped dials (::ffff:a.b.c.d) produce the same key as connect4 */
	__u32 w0 = CTX_U32(ctx->user_ip6[0]), w1 = CTX_U32(ctx->user_ip6[1]);
	__u32 w2 = CTX_U32(ctx->user_ip6[2]), w3 = CTX_U32(ctx->user_ip6[3]);
	__builtin_memcpy(&dst.addr[0], &w0, 4);
	__builtin_memcpy(&dst.addr[4], &w1, 4);
	__builtin_memcpy(&dst.addr[8], &w2, 4);
	__builtin_memcpy(&dst.addr[12], &w3, 4);
	dst.port = bpf_ntohs((__u16)ctx->user_port);
	return redirect(ctx, &dst, AF_INET6);
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

char LICENSE[] SEC("license") = "GPL";
