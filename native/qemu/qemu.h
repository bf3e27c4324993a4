/* SPDX-License-Identifier: Apache-2.0 */
/*
 * qemu: what the VMM's QEMU backend needs from C, without Lua.
 *
 *   - qemu_build_argv(): the QEMU command line of one CVM launch, in the order upstream
 *     dstack-vmm builds it (spec kms-vmm-gateway.md §4.6), every input validated first;
 *   - qemu_mac_address(): the NIC MAC derived from the VM id (upstream's derivation);
 *   - the accelerator probe's pieces: a tiny built-in guest, the probe's command line and
 *     the host's TDX switch (the Lua side runs the probe, see native/qemu/README.md).
 *
 * The QMP client, which runs on a libuv loop, is in qemu_qmp.h.
 *
 * Failures fill a struct qemu_error: a stable upper-case code (EINVAL for a refused input,
 * ENOMEM, EIO) and a message that starts with the field it is about, e.g.
 * "ports[2].host_port: must be 1..65535". Indexes in messages count from 1, as in the Lua
 * tables the VMM passes.
 */
#ifndef MOONSTACK_QEMU_H
#define MOONSTACK_QEMU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** An error: a stable upper-case code and a message naming the field. */
struct qemu_error {
	char code[16];
	char msg[320];
};

/** Upper bounds of the launch description (larger inputs are refused with EINVAL). */
enum {
	QEMU_MAX_PATH = 4095,	 /**< bytes in a host path */
	QEMU_MAX_SOCKET = 107,	 /**< bytes in a unix socket path (sun_path) */
	QEMU_MAX_CMDLINE = 4096, /**< bytes in the kernel command line */
	QEMU_MAX_VCPU = 512,
	QEMU_MIN_MEMORY_MB = 16,
	QEMU_MAX_MEMORY_MB = 16 * 1024 * 1024, /**< 16 TiB */
	QEMU_MAX_NICS = 8,
	QEMU_MAX_PORTS = 256,
	QEMU_MAX_SERIAL_PORTS = 16,
	QEMU_MAX_VOLUMES = 16,
	QEMU_MAX_ID = 128, /**< bytes in the VM id */
};

/** The accelerator of a launch. */
enum qemu_accel {
	QEMU_ACCEL_TDX = 0, /**< KVM with a TDX guest (q35, `-cpu host`, the tdx-guest object) */
	QEMU_ACCEL_KVM,	    /**< plain KVM (q35, `-cpu host`) */
	QEMU_ACCEL_TCG,	    /**< software emulation (`-machine pc` unless told otherwise) */
};

/** How the work dir's shared folder reaches the guest. */
enum qemu_share_mode {
	QEMU_SHARE_NONE = 0,
	QEMU_SHARE_9P,	  /**< `-virtfs local,...,mount_tag=host-shared` */
	QEMU_SHARE_VVFAT, /**< a read-only FAT view of the directory (`-blockdev driver=vvfat`) */
	QEMU_SHARE_VHD,	  /**< a prepared FAT image file, read-only raw virtio-blk */
};

/** The host share. */
struct qemu_share {
	enum qemu_share_mode mode;
	const char *path; /**< the directory (9p, vvfat) or the image file (vhd) */
	bool readonly;	  /**< 9p only: `readonly=on` (vvfat and vhd are always read-only) */
	const char *security_model; /**< 9p: "mapped" (NULL: the default), "none", "passthrough" */
	const char *label;	    /**< vvfat: the FAT label (NULL: "DSTACKSHR") */
};

/** The NIC back ends. */
enum qemu_nic_mode {
	QEMU_NIC_USER = 0, /**< `-netdev user` (slirp): host forwards, `restrict` */
	QEMU_NIC_TAP,	   /**< `-netdev tap,ifname=...,script=no,downscript=no,vhost=off` */
	QEMU_NIC_BRIDGE,   /**< `-netdev bridge,br=...` (qemu-bridge-helper) */
};

/** One NIC (`-netdev` + `-device virtio-net-pci`, ids net0, net1, ...). */
struct qemu_nic {
	enum qemu_nic_mode mode;
	bool restrict_net;	/**< user: `restrict=yes` (the guest reaches nothing outside) */
	const char *net;	/**< user: IPv4 CIDR such as "10.0.2.0/24", or NULL */
	const char *dhcp_start; /**< user: IPv4 address, or NULL (needs net) */
	const char *ifname;	/**< tap: the interface (1..15 of [A-Za-z0-9_.-]) */
	const char *bridge;	/**< bridge: the bridge (same rule) */
	const char *mac;	/**< "xx:xx:xx:xx:xx:xx", or NULL: derived from the VM id */
};

/** A port forward on the first user-mode NIC: `hostfwd=PROTO:ADDR:HOST_PORT-:VM_PORT`. */
struct qemu_port {
	const char *protocol;	  /**< "tcp" or "udp" */
	const char *host_address; /**< IPv4 address, or NULL/"" for every address */
	unsigned host_port;	  /**< 1..65535 */
	unsigned vm_port;	  /**< 1..65535 */
};

/** A virtio-serial port backed by a unix socket (the vsock replacement where there is none). */
struct qemu_serial_port {
	const char *name; /**< guest-visible name, 1..64 of [A-Za-z0-9_.-] */
	const char *path; /**< the unix socket */
	bool server;	  /**< QEMU listens (wait=off); else it connects (reconnect=1) */
};

/** One launch. Zero-initialise, then set what you need; NULL/0 means absent. */
struct qemu_vm {
	const char *qemu;      /**< QEMU binary: an absolute path or a bare name on PATH */
	enum qemu_accel accel; /**< TDX, KVM or TCG */
	const char *machine;   /**< TCG only: "pc" (NULL: the default) or "q35" */
	const char *cpu;       /**< KVM/TCG only: a `-cpu` model (NULL: host on KVM, none on TCG) */
	const char *vm_id;     /**< the VM id: the MACs derive from it (required with NICs) */
	unsigned vcpu;	       /**< 1..QEMU_MAX_VCPU */
	unsigned memory_mb;    /**< QEMU_MIN_MEMORY_MB..QEMU_MAX_MEMORY_MB */
	const char *kernel;    /**< required */
	const char *initrd;    /**< optional */
	const char *cmdline;   /**< `-append`, passed as is (never modified) */
	const char *bios;      /**< optional firmware */
	const char *rootfs;    /**< optional: read-only raw virtio-blk (hd0) */
	const char *data_disk; /**< optional: the data disk, hda.img (hd1) */
	const char *data_disk_format; /**< NULL (QEMU probes, as upstream), "qcow2" or "raw" */
	const char *const *volumes;   /**< read-only raw virtio-blk volumes (vol0, ...) */
	size_t nvolumes;
	const char *serial_log; /**< required: the console, appended to */
	const char *serial_pty; /**< optional: console on a pty too (upstream's form) */
	const char *qmp_socket; /**< optional: `-qmp unix:PATH,server=on,wait=off` */
	struct qemu_share share;
	const struct qemu_nic *nics;
	size_t nnics;
	const uint8_t *mac_prefix; /**< 0..3 bytes replacing the first bytes of derived MACs */
	size_t mac_prefix_len;
	const struct qemu_port *ports; /**< forwarded on the first user-mode NIC */
	size_t nports;
	const struct qemu_serial_port *serial_ports;
	size_t nserial_ports;
	unsigned vsock_cid;	  /**< 3..0xfffffffe, or 0 for no vsock device */
	const char *mrconfigid;	  /**< TDX: base64 of MRCONFIGID (at most 64 characters) */
	unsigned qgs_port;	  /**< TDX: QGS vsock port (host CID 2), 0: none */
	uint64_t pci_hole64_size; /**< q35 64-bit PCI hole in bytes, 0: QEMU's default */
	bool hotplug_off;	  /**< q35: ACPI PCI hotplug with bridge support off */
	bool no_reboot;		  /**< `-no-reboot`: a guest reboot ends QEMU */
};

/** A NULL-terminated argv (argv[0] is the QEMU binary). Free with qemu_argv_free(). */
struct qemu_argv {
	char **argv;
	size_t argc;
};

/**
 * Validate @p vm and build its command line into @p out. Returns 0, or -EINVAL (refused
 * input: @p err names the field) / -ENOMEM. On failure @p out is left empty.
 *
 * Paths must be absolute (the QEMU binary may also be a bare name) and free of control
 * characters; a comma in a path is written doubled (",,") wherever QEMU parses an option list.
 * Every other string is checked against a character set that holds no comma.
 */
int qemu_build_argv(const struct qemu_vm *vm, struct qemu_argv *out, struct qemu_error *err);

/** Free what qemu_build_argv() returned (safe on a zeroed or already freed struct). */
void qemu_argv_free(struct qemu_argv *a);

/** The name of @p accel ("tdx", "kvm", "tcg"), or NULL. */
const char *qemu_accel_name(enum qemu_accel accel);

/** Parse "tdx", "kvm" or "tcg"; returns -1 for anything else. */
int qemu_accel_parse(const char *name);

/**
 * The MAC of NIC @p index of VM @p vm_id, as upstream derives it: SHA-256 of the id (index
 * 0) or of "id:index", its first bytes replaced by @p prefix (0..3 bytes), then the first
 * byte made locally administered unicast ((b & 0xfe) | 0x02). Writes "xx:xx:xx:xx:xx:xx" and
 * a NUL to @p out. Returns 0, or -EINVAL for a prefix longer than 3 bytes.
 */
int qemu_mac_address(const char *vm_id, const uint8_t *prefix, size_t prefix_len, unsigned index,
		     char out[18]);

/**
 * The probe guest: a multiboot image that switches to 64-bit long mode, runs a loop of 10^8
 * iterations, then writes 0x2a to an isa-debug-exit port at 0xf4, which makes QEMU exit with
 * status QEMU_PROBE_EXIT. It finishes in well under a second on KVM or TCG, but takes minutes
 * where KVM traps every instruction (this machine's PVM), like the stock kernels that hang
 * there. Sets *@p len and returns the bytes (static).
 */
const uint8_t *qemu_probe_payload(size_t *len);

/** The exit status of QEMU when the probe guest ran to its end. */
#define QEMU_PROBE_EXIT 85

/**
 * Write the probe guest to @p path (created 0600, must not exist). Returns 0 or -errno with
 * @p err filled.
 */
int qemu_probe_write_payload(const char *path, struct qemu_error *err);

/**
 * The probe's command line: @p qemu booting @p kernel (the probe guest, or a guest that keeps
 * the same contract) under @p accel ("kvm" or "tcg") with an isa-debug-exit device, no disks,
 * no network, no display, 32 MiB. Returns 0, -EINVAL or -ENOMEM.
 */
int qemu_probe_argv(const char *qemu, const char *accel, const char *kernel, struct qemu_argv *out,
		    struct qemu_error *err);

/**
 * Whether the host reports TDX: `<sysfs_root>/sys/module/kvm_intel/parameters/tdx` reads
 * "Y" or "1" (@p sysfs_root NULL or "" for the real one). Returns 1, 0 (absent or "N"), or
 * -errno when it cannot be read for another reason (@p err filled).
 */
int qemu_host_tdx(const char *sysfs_root, struct qemu_error *err);

#endif
