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

#endif
