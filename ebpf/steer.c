// SPDX-License-Identifier: GPL-2.0 OR MIT
//
// bootstorm's XDP program: steers DHCP and TFTP to AF_XDP sockets, passes everything else.
//
// Per frame: Ethernet (one 802.1Q or 802.1ad tag understood; tagged frames are steered only with
// CFG_VLAN), IPv4 with any IHL (fragments are
// passed: the kernel reassembles them), UDP. A frame is redirected to the XSKMAP entry of its
// receive queue when its destination port is marked in `ports` (67, 69 and the data ports of
// live TFTP transfers, marked and cleared by userspace) and, when `CFG_CHECK_DST` is set, its
// destination address is in `addrs` or the limited broadcast. Nothing else is touched.
//
// Boot-storm control, for DHCPDISCOVERs only (a REQUEST is never limited, as in the core):
// - a token bucket per source (the relay's giaddr, else the L2 source MAC: each kind with its
//   own rate per second and burst); a DISCOVER over the limit is dropped here and counted
//   (`rate_limited`);
// - a retransmission filter: a DISCOVER whose client (chaddr) already has one with the same xid
//   held by userspace, younger than `retrans_ns`, is dropped and counted (`retransmits`).
//   Userspace marks a client's slot when it takes the DISCOVER from its ring (a frame the ring
//   had no room for is never marked, so its repeat goes through) and clears it when it answers
//   (the map is mmapped: no system call either way), so a client whose OFFER was lost is heard
//   again at once.
//
// Counters are per CPU (`stats`, indices below), summed by userspace.
//
// Built by build.rs with `clang -O2 -g -target bpf` when clang is present; the object is
// committed next to this file (steer.o) and a test fails when it is stale.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define STAT_REDIRECTED 0
#define STAT_PASSED 1
#define STAT_MALFORMED 2
#define STAT_RATE_LIMITED 3
#define STAT_RETRANSMITS 4
#define STAT_NO_SOCKET 5
#define STAT_COUNT 8

#define CFG_CHECK_DST 1u
#define CFG_LIMIT 2u
#define CFG_RETRANS 4u
// Steer VLAN-tagged frames too: set when the interface has VLAN devices of the kernel's, which
// userspace then answers for, with the tag; without it tagged frames go to the kernel.
#define CFG_VLAN 8u

#define DHCP_SERVER_PORT 67
#define DHCP_MIN_LEN 240
#define DHCP_OPT_PAD 0
#define DHCP_OPT_END 255
#define DHCP_OPT_TYPE 53
#define DHCP_DISCOVER 1
#define DHCP_SCAN_OPTIONS 24

#define PENDING_SLOTS 65536

struct config {
	__u32 flags;
	// DISCOVERs per second and burst per client MAC (0 = no limit).
	__u32 mac_rate;
	__u32 mac_burst;
	// The same per relay (giaddr): a relay speaks for many clients.
	__u32 relay_rate;
	__u32 relay_burst;
	__u32 pad;
	// How long a DISCOVER is "being answered" at most.
	__u64 retrans_ns;
};

struct bucket {
	__u64 last_ns;
	// Tokens in thousandths.
	__u64 milli;
};

struct source {
	// 4 = giaddr, 6 = MAC.
	__u32 kind;
	__u8 id[8];
};

// One client's DISCOVER held by userspace: slot = hash(chaddr) % PENDING_SLOTS. mac[0..6] + xid
// + when (CLOCK_MONOTONIC ns); written by userspace when it takes the DISCOVER, `used` cleared
// when it answers.
struct pending {
	__u8 mac[6];
	__u16 used;
	__u32 xid;
	__u64 at_ns;
};

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u32);
} ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u32);
} addrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct config);
} config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct source);
	__type(value, struct bucket);
} buckets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PENDING_SLOTS);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct pending);
} pending SEC(".maps");

static __always_inline void count(__u32 what)
{
	__u64 *c = bpf_map_lookup_elem(&stats, &what);
	if (c)
		*c += 1;
}

static __always_inline int pass(__u32 why)
{
	count(why);
	return XDP_PASS;
}

// FNV-1a of a MAC, the slot of its client in `pending`; userspace computes the same.
static __always_inline __u32 mac_slot(const __u8 *mac)
{
	__u32 h = 2166136261u;
#pragma unroll
	for (int i = 0; i < 6; i++) {
		h ^= mac[i];
		h *= 16777619u;
	}
	return h % PENDING_SLOTS;
}

// The DHCP message type (option 53) in the first options, or 0.
static __always_inline int message_type(const __u8 *opts, const void *end)
{
	const __u8 *p = opts;
#pragma unroll
	for (int i = 0; i < DHCP_SCAN_OPTIONS; i++) {
		if ((const void *)(p + 1) > end)
			return 0;
		__u8 code = p[0];
		if (code == DHCP_OPT_END)
			return 0;
		if (code == DHCP_OPT_PAD) {
			p += 1;
			continue;
		}
		if ((const void *)(p + 2) > end)
			return 0;
		__u8 len = p[1];
		if (code == DHCP_OPT_TYPE) {
			if (len != 1 || (const void *)(p + 3) > end)
				return 0;
			return p[2];
		}
		p += 2 + len;
	}
	return 0;
}

// The token bucket of a DISCOVER's source: 1 if it may pass. Updates from several CPUs may
// race and lose a refill or a take; the limit is then a little loose, never tighter.
static __always_inline int admit(__u32 rate, __u32 burst, const struct source *src, __u64 now)
{
	struct bucket *b = bpf_map_lookup_elem(&buckets, src);
	__u64 cap = (__u64)burst * 1000;
	if (!b) {
		struct bucket fresh = { .last_ns = now, .milli = cap >= 1000 ? cap - 1000 : 0 };
		bpf_map_update_elem(&buckets, src, &fresh, BPF_ANY);
		return cap >= 1000;
	}
	__u64 elapsed = now - b->last_ns;
	if (elapsed > 10000000000ull)
		elapsed = 10000000000ull;
	__u64 milli = b->milli + elapsed * rate / 1000000;
	if (milli > cap)
		milli = cap;
	b->last_ns = now;
	if (milli < 1000) {
		b->milli = milli;
		return 0;
	}
	b->milli = milli - 1000;
	return 1;
}

// 1 if this DISCOVER repeats one of its client's still waiting in userspace.
static __always_inline int repeated(const struct config *cfg, const __u8 *chaddr, __u32 xid,
				    __u64 now)
{
	__u32 slot = mac_slot(chaddr);
	const struct pending *p = bpf_map_lookup_elem(&pending, &slot);
	if (!p || !p->used || p->xid != xid || now - p->at_ns >= cfg->retrans_ns)
		return 0;
#pragma unroll
	for (int i = 0; i < 6; i++)
		if (p->mac[i] != chaddr[i])
			return 0;
	return 1;
}

SEC("xdp")
int bootstorm_steer(struct xdp_md *ctx)
{
	const void *data = (void *)(long)ctx->data;
	const void *end = (void *)(long)ctx->data_end;
	const struct ethhdr *eth = data;
	if ((const void *)(eth + 1) > end)
		return pass(STAT_PASSED);
	__u16 proto = eth->h_proto;
	const void *l3 = eth + 1;
	int tagged = 0;
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD)) {
		// TCI (2 bytes), then the inner type.
		if (l3 + 4 > end)
			return pass(STAT_MALFORMED);
		proto = *(const __u16 *)(l3 + 2);
		l3 += 4;
		tagged = 1;
	}
	if (proto != bpf_htons(ETH_P_IP))
		return pass(STAT_PASSED);
	const struct iphdr *ip = l3;
	if ((const void *)(ip + 1) > end)
		return pass(STAT_MALFORMED);
	__u32 ihl = ip->ihl * 4;
	if (ip->version != 4 || ihl < sizeof(*ip))
		return pass(STAT_MALFORMED);
	if (ip->protocol != IPPROTO_UDP)
		return pass(STAT_PASSED);
	// Fragments (more to come, or not the first) go to the kernel to be put together.
	if (ip->frag_off & bpf_htons(0x3fff))
		return pass(STAT_PASSED);
	const struct udphdr *udp = l3 + ihl;
	if ((const void *)(udp + 1) > end)
		return pass(STAT_MALFORMED);
	__u32 port = bpf_ntohs(udp->dest);
	__u32 *mark = bpf_map_lookup_elem(&ports, &port);
	if (!mark || !*mark)
		return pass(STAT_PASSED);
	__u16 ip_len = bpf_ntohs(ip->tot_len);
	__u16 udp_len = bpf_ntohs(udp->len);
	if (ip_len < ihl + sizeof(*udp) || (const void *)ip + ip_len > end ||
	    udp_len < sizeof(*udp) || udp_len > ip_len - ihl)
		return pass(STAT_MALFORMED);
	__u32 zero = 0;
	const struct config *cfg = bpf_map_lookup_elem(&config, &zero);
	if (!cfg || (tagged && !(cfg->flags & CFG_VLAN)))
		return pass(STAT_PASSED);
	if (cfg->flags & CFG_CHECK_DST) {
		__u32 dst = ip->daddr;
		if (dst != 0xffffffff && !bpf_map_lookup_elem(&addrs, &dst))
			return pass(STAT_PASSED);
	}
	if (port == DHCP_SERVER_PORT && (cfg->flags & (CFG_LIMIT | CFG_RETRANS))) {
		const __u8 *dhcp = (const __u8 *)(udp + 1);
		if ((const void *)(dhcp + DHCP_MIN_LEN) > end)
			return pass(STAT_MALFORMED);
		// op = BOOTREQUEST and the magic cookie, else not ours to judge.
		if (dhcp[0] == 1 && dhcp[236] == 99 && dhcp[237] == 130 && dhcp[238] == 83 &&
		    dhcp[239] == 99 && message_type(dhcp + DHCP_MIN_LEN, end) == DHCP_DISCOVER) {
			__u64 now = bpf_ktime_get_ns();
			__u32 xid;
			__builtin_memcpy(&xid, dhcp + 4, 4);
			if ((cfg->flags & CFG_RETRANS) && repeated(cfg, dhcp + 28, xid, now)) {
				count(STAT_RETRANSMITS);
				return XDP_DROP;
			}
			if (cfg->flags & CFG_LIMIT) {
				struct source src = {};
				__u32 rate, burst;
				if (*(const __u32 *)(dhcp + 24)) {
					src.kind = 4;
					__builtin_memcpy(src.id, dhcp + 24, 4);
					rate = cfg->relay_rate;
					burst = cfg->relay_burst;
				} else {
					src.kind = 6;
					__builtin_memcpy(src.id, eth->h_source, 6);
					rate = cfg->mac_rate;
					burst = cfg->mac_burst;
				}
				if (rate && !admit(rate, burst, &src, now)) {
					count(STAT_RATE_LIMITED);
					return XDP_DROP;
				}
			}
		}
	}
	long act = bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);
	if (act != XDP_REDIRECT)
		return pass(STAT_NO_SOCKET);
	count(STAT_REDIRECTED);
	return XDP_REDIRECT;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
