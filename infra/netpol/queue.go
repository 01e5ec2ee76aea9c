// Replaces github.com/google/nftables (v0.3.0) expr/queue.go in the vendored copy that
// infra/node.mk builds kube-network-policies from: the agent sends the first packet of
// every connection of a policy-selected pod to user space through an nfqueue.
//
// The upstream file encodes that as nftables' native `queue` expression, which needs a
// kernel built with CONFIG_NFT_QUEUE. Kernels without it still have the same queueing
// through the xtables compatibility layer (CONFIG_NFT_COMPAT and the NFQUEUE target, what
// `iptables-nft -j NFQUEUE` uses). This file keeps the package's Queue API and encodes a
// Queue as that NFQUEUE target (revision 3): the same queue number, the same bypass and
// fan-out flags, the same verdicts.
package expr

import (
	"encoding/binary"

	"github.com/google/nftables/binaryutil"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// QueueAttribute is an nftables queue expression attribute.
type QueueAttribute uint16

// QueueFlag is a flag of a queue: bypass when nobody listens, fan out over CPUs.
type QueueFlag uint16

// The attributes and flags, as nftables numbers them (NFQUEUE's flags have the same bits).
const (
	QueueNum   QueueAttribute = unix.NFTA_QUEUE_NUM
	QueueTotal QueueAttribute = unix.NFTA_QUEUE_TOTAL
	QueueFlags QueueAttribute = unix.NFTA_QUEUE_FLAGS

	QueueFlagBypass QueueFlag = unix.NFT_QUEUE_FLAG_BYPASS
	QueueFlagFanout QueueFlag = unix.NFT_QUEUE_FLAG_CPU_FANOUT
	QueueFlagMask   QueueFlag = unix.NFT_QUEUE_FLAG_MASK
)

// Queue hands packets to user space on queue Num (to Total queues when fanning out).
type Queue struct {
	Num   uint16
	Total uint16
	Flag  QueueFlag
}

// nfqueueTargetRevision is xt_NFQUEUE's revision 3 (struct xt_NFQ_info_v3).
const nfqueueTargetRevision = 3

func (e *Queue) marshal(fam byte) ([]byte, error) {
	data, err := e.marshalData(fam)
	if err != nil {
		return nil, err
	}
	return netlink.MarshalAttributes([]netlink.Attribute{
		{Type: unix.NFTA_EXPR_NAME, Data: []byte("target\x00")},
		{Type: unix.NLA_F_NESTED | unix.NFTA_EXPR_DATA, Data: data},
	})
}

func (e *Queue) marshalData(fam byte) ([]byte, error) {
	if e.Total == 0 {
		e.Total = 1
	}
	// struct xt_NFQ_info_v3 { __u16 queuenum, queues_total, flags; } in host byte order,
	// padded to the 8-byte alignment xtables checks the size against.
	info := make([]byte, 0, 8)
	info = append(info, binaryutil.NativeEndian.PutUint16(e.Num)...)
	info = append(info, binaryutil.NativeEndian.PutUint16(e.Total)...)
	info = append(info, binaryutil.NativeEndian.PutUint16(uint16(e.Flag&QueueFlagMask))...)
	info = append(info, 0, 0)
	return netlink.MarshalAttributes([]netlink.Attribute{
		{Type: unix.NFTA_TARGET_NAME, Data: []byte("NFQUEUE\x00")},
		{Type: unix.NFTA_TARGET_REV, Data: binaryutil.BigEndian.PutUint32(nfqueueTargetRevision)},
		{Type: unix.NFTA_TARGET_INFO, Data: info},
	})
}

// unmarshal reads a native queue expression (what the kernel reports for one).
func (e *Queue) unmarshal(fam byte, data []byte) error {
	ad, err := netlink.NewAttributeDecoder(data)
	if err != nil {
		return err
	}
	ad.ByteOrder = binary.BigEndian
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_QUEUE_NUM:
			e.Num = ad.Uint16()
		case unix.NFTA_QUEUE_TOTAL:
			e.Total = ad.Uint16()
		case unix.NFTA_QUEUE_FLAGS:
			e.Flag = QueueFlag(ad.Uint16())
		}
	}
	return ad.Err()
}
