/* Interlock: the layout shared by the BPF program (interlock.bpf.c), the addon
 * (native/) and the TypeScript decoder (src/interception/layout.ts). Change all
 * three together. Addresses are 16 bytes, IPv4 as v4-mapped IPv6 (::ffff:a.b.c.d),
 * so one key shape serves connect4, connect6 and v4-mapped dials alike. Ports in
 * these structs are in host byte order. */
#ifndef INTERLOCK_H
#define INTERLOCK_H

#define IL_COMM_LEN 16
#define IL_MAX_TARGETS 4096
#define IL_MAX_PORTS 256
#define IL_MAX_FLOWS 65536
#define IL_MAX_ALLOW 1024
#define IL_MAX_UNIX_DENY 256
#define IL_UNIX_PATH_LEN 108
#define IL_EVENTS_BYTES (256 * 1024)

/* il_config[0].flags */
#define IL_EGRESS_LOCKDOWN 1 /* refuse every connect/send that is neither redirected nor allow-listed */

/* where an intercepted connection goes: the proxy listener's port on loopback */
struct il_redirect {
	__u16 proxy_port;
	__u8 protocol; /* IL_PROTO_* */
	__u8 reserved;
};

enum { IL_PROTO_POSTGRES = 1, IL_PROTO_SSH = 2, IL_PROTO_KUBE = 3 };

struct il_endpoint {
	__u8 addr[16];
	__u16 port;
	__u16 reserved;
};

/* who dialed what: recorded at connect, looked up by the proxy at accept */
struct il_origin {
	__u8 dst_addr[16];
	__u16 dst_port;
	__u16 proxy_port;
	__u32 pid;
	__u32 uid;
	__u8 protocol;
	__u8 socket_family; /* AF_INET or AF_INET6: how the client dialed */
	__u16 reserved;
	__u64 cgroup_id;
	char comm[IL_COMM_LEN];
};

/* egress allow-list entry (LPM trie): protocol (0: any), port (0: any), then the
 * address, so a prefix length of 24 + n matches the first n address bits */
struct il_allow_key {
	__u32 prefixlen;
	__u8 protocol;
	__u8 port_be[2]; /* big-endian: it is part of the matched bit string */
	__u8 addr[16];
};

struct il_config {
	__u32 flags;
};

enum { IL_EV_CONNECT = 1, IL_EV_SENDMSG = 2, IL_EV_SOCKET = 3, IL_EV_UNIX = 4 };

/* one refused attempt, sent to the daemon through the il_events ring buffer */
struct il_event {
	__u64 cgroup_id;
	__u32 pid;
	__u32 uid;
	__u8 kind; /* IL_EV_* */
	__u8 protocol; /* IPPROTO_* (or the socket's protocol for IL_EV_SOCKET) */
	__u16 port;
	__u16 family;
	__u16 sock_type;
	__u8 addr[16];
	char comm[IL_COMM_LEN];
	char path[IL_UNIX_PATH_LEN]; /* IL_EV_UNIX: the listener's bound name */
	__u32 reserved;
};

#endif
