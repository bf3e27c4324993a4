/* SPDX-License-Identifier: Apache-2.0 */
/*
 * native/qemu without QEMU: the launch command line against golden argvs (TDX in upstream
 * dstack-vmm's order, spec §4.6; plain KVM; TCG), host forwards, MAC derivation (upstream's
 * own vectors), comma escaping, refusals naming their field, the probe guest and its command
 * line, the TDX switch on a fake sysfs, and the JSON checker QMP framing relies on.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "qemu/qemu.h"
#include "qemu/qemu_json.h"

#define CMDLINE                                                                               \
	"console=ttyS0 init=/init panic=1 net.ifnames=0 biosdevname=0 mce=off oops=panic "    \
	"pci=noearly pci=nommconf random.trust_cpu=y random.trust_bootloader=n tsc=reliable " \
	"no-kvmclock dstack.rootfs_hash=8a1f dstack.rootfs_size=461410304"
#define MRCONFIGID "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEB"

static void expect_argv(const struct qemu_vm *vm, const char *const *want)
{
	struct qemu_argv a;
	struct qemu_error e = { "", "" };
	int rc = qemu_build_argv(vm, &a, &e);
	if (rc != 0)
		fail_msg("qemu_build_argv: %s: %s", e.code, e.msg);
	size_t n = 0;
	while (want[n])
		n++;
	for (size_t i = 0; i < n && i < a.argc; i++)
		if (strcmp(a.argv[i], want[i]) != 0)
			fail_msg("argv[%zu]: got '%s', want '%s'", i, a.argv[i], want[i]);
	if (a.argc != n)
		fail_msg("argc %zu, want %zu (first extra: %s)", a.argc, n,
			 a.argc > n ? a.argv[n] : want[a.argc]);
	assert_null(a.argv[a.argc]);
	qemu_argv_free(&a);
	assert_null(a.argv);
	qemu_argv_free(&a); // twice is fine
}

/* The refusal of @p vm: code EINVAL and a message starting with @p prefix. */
static void expect_refused(const struct qemu_vm *vm, const char *prefix)
{
	struct qemu_argv a = { (char **)1, 99 };
	struct qemu_error e = { "", "" };
	int rc = qemu_build_argv(vm, &a, &e);
	if (rc != -EINVAL)
		fail_msg("expected a refusal starting with '%s', got rc %d", prefix, rc);
	assert_null(a.argv);
	assert_int_equal(a.argc, 0);
	assert_string_equal(e.code, "EINVAL");
	if (strncmp(e.msg, prefix, strlen(prefix)) != 0)
		fail_msg("message '%s' does not start with '%s'", e.msg, prefix);
}

static const struct qemu_port TDX_PORTS[] = {
	{ "tcp", "127.0.0.1", 18080, 8080 },
	{ "udp", "0.0.0.0", 18443, 443 },
};
static const struct qemu_nic USER_NIC[] = {
	{ .mode = QEMU_NIC_USER, .net = "10.0.2.0/24", .dhcp_start = "10.0.2.10" },
};

/* A TDX launch as upstream makes it for an 0.5.x image with every optional part present. */
static struct qemu_vm tdx_vm(void)
{
	return (struct qemu_vm){
		.qemu = "/usr/bin/qemu-system-x86_64",
		.accel = QEMU_ACCEL_TDX,
		.vm_id = "vm-123",
		.vcpu = 4,
		.memory_mb = 4096,
		.kernel = "/img/dstack-0.5.4/bzImage",
		.initrd = "/img/dstack-0.5.4/initramfs.cpio.gz",
		.cmdline = CMDLINE,
		.bios = "/img/dstack-0.5.4/ovmf.fd",
		.rootfs = "/img/dstack-0.5.4/rootfs.img.verity",
		.data_disk = "/run/vm/vm-123/hda.img",
		.serial_log = "/run/vm/vm-123/serial.log",
		.serial_pty = "/run/vm/vm-123/serial.pty",
		.qmp_socket = "/run/vm/vm-123/qmp.sock",
		.share = { .mode = QEMU_SHARE_9P, .path = "/run/vm/vm-123/shared" },
		.nics = USER_NIC,
		.nnics = 1,
		.ports = TDX_PORTS,
		.nports = 2,
		.vsock_cid = 1000,
		.mrconfigid = MRCONFIGID,
		.qgs_port = 4050,
		.pci_hole64_size = 1ull << 40,
		.hotplug_off = true,
	};
}

static void test_tdx_golden(void **state)
{
	struct qemu_vm vm = tdx_vm();
	static const char *const want[] = {
		"/usr/bin/qemu-system-x86_64",
		"-accel",
		"kvm",
		"-cpu",
		"host",
		"-nographic",
		"-nodefaults",
		"-chardev",
		"pty,id=com0,path=/run/vm/vm-123/serial.pty,logfile=/run/vm/vm-123/serial.log,"
		"logappend=on",
		"-serial",
		"chardev:com0",
		"-qmp",
		"unix:/run/vm/vm-123/qmp.sock,server=on,wait=off",
		"-bios",
		"/img/dstack-0.5.4/ovmf.fd",
		"-kernel",
		"/img/dstack-0.5.4/bzImage",
		"-initrd",
		"/img/dstack-0.5.4/initramfs.cpio.gz",
		"-global",
		"ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off",
		"-global",
		"q35-pcihost.pci-hole64-size=0x10000000000",
		"-drive",
		"file=/img/dstack-0.5.4/rootfs.img.verity,if=none,id=hd0,format=raw,readonly=on",
		"-device",
		"virtio-blk-pci,drive=hd0",
		"-drive",
		"file=/run/vm/vm-123/hda.img,if=none,id=hd1",
		"-device",
		"virtio-blk-pci,drive=hd1",
		"-netdev",
		"user,id=net0,net=10.0.2.0/24,dhcpstart=10.0.2.10,restrict=no,"
		"hostfwd=tcp:127.0.0.1:18080-:8080,hostfwd=udp:0.0.0.0:18443-:443",
		"-device",
		"virtio-net-pci,netdev=net0,mac=96:b1:d8:b9:08:e6",
		"-device",
		"vhost-vsock-pci,guest-cid=1000",
		"-virtfs",
		"local,path=/run/vm/vm-123/shared,mount_tag=host-shared,readonly=off,"
		"security_model=mapped,id=virtfs0",
		"-machine",
		"q35,kernel-irqchip=split,confidential-guest-support=tdx,hpet=off",
		"-object",
		"{\"qom-type\":\"tdx-guest\",\"id\":\"tdx\",\"mrconfigid\":\"" MRCONFIGID "\","
		"\"quote-generation-socket\":{\"type\":\"vsock\",\"cid\":\"2\",\"port\":\"4050\"}}",
		"-smp",
		"4",
		"-m",
		"4096M",
		"-append",
		CMDLINE,
		NULL,
	};
	expect_argv(&vm, want);
}

/* The tdx-guest object leaves out what is unset; a bare launch has only what it must. */
static void test_tdx_object_keys(void **state)
{
	struct qemu_vm vm = {
		.qemu = "qemu-system-x86_64",
		.accel = QEMU_ACCEL_TDX,
		.vcpu = 1,
		.memory_mb = 2048,
		.kernel = "/k",
		.serial_log = "/wd/serial.log",
	};
	static const char *const bare[] = {
		"qemu-system-x86_64",
		"-accel",
		"kvm",
		"-cpu",
		"host",
		"-nographic",
		"-nodefaults",
		"-chardev",
		"file,id=com0,path=/wd/serial.log,append=on",
		"-serial",
		"chardev:com0",
		"-kernel",
		"/k",
		"-machine",
		"q35,kernel-irqchip=split,confidential-guest-support=tdx,hpet=off",
		"-object",
		"{\"qom-type\":\"tdx-guest\",\"id\":\"tdx\"}",
		"-smp",
		"1",
		"-m",
		"2048M",
		NULL,
	};
	expect_argv(&vm, bare);
	vm.qgs_port = 4050;
	struct qemu_argv a;
	struct qemu_error e;
	assert_int_equal(qemu_build_argv(&vm, &a, &e), 0);
	assert_string_equal(a.argv[16], "{\"qom-type\":\"tdx-guest\",\"id\":\"tdx\","
					"\"quote-generation-socket\":{\"type\":\"vsock\",\"cid\":"
					"\"2\",\"port\":\"4050\"}}");
	qemu_argv_free(&a);
	vm.qgs_port = 0;
	vm.mrconfigid = "AAAA";
	assert_int_equal(qemu_build_argv(&vm, &a, &e), 0);
	assert_string_equal(a.argv[16], "{\"qom-type\":\"tdx-guest\",\"id\":\"tdx\",\"mrconfigid\":"
					"\"AAAA\"}");
	qemu_argv_free(&a);
}

/* Plain KVM: two user NICs (forwards on the first only), a tap NIC, a MAC prefix, an explicit
 * MAC, volumes, the vhd share, a -cpu override. */
static void test_kvm_golden(void **state)
{
	static const struct qemu_nic nics[] = {
		{ .mode = QEMU_NIC_USER, .restrict_net = true },
		{ .mode = QEMU_NIC_USER, .net = "10.0.3.0/24" },
		{ .mode = QEMU_NIC_TAP, .ifname = "tap-vm1" },
		{ .mode = QEMU_NIC_BRIDGE, .bridge = "br0", .mac = "52:54:00:aa:bb:cc" },
	};
	static const struct qemu_port ports[] = { { "tcp", NULL, 2222, 22 } };
	static const char *const vols[] = { "/vol/a.img", "/vol/b.img" };
	static const uint8_t prefix[] = { 0x52, 0x54 };
	struct qemu_vm vm = {
		.qemu = "/opt/qemu/bin/qemu-system-x86_64",
		.accel = QEMU_ACCEL_KVM,
		.cpu = "host,-arch-capabilities",
		.vm_id = "vm-123",
		.vcpu = 2,
		.memory_mb = 1024,
		.kernel = "/img/bzImage",
		.initrd = "/img/initrd",
		.cmdline = "console=ttyS0",
		.data_disk = "/wd/hda.img",
		.data_disk_format = "qcow2",
		.volumes = vols,
		.nvolumes = 2,
		.serial_log = "/wd/serial.log",
		.share = { .mode = QEMU_SHARE_VHD, .path = "/wd/shared.img" },
		.nics = nics,
		.nnics = 4,
		.mac_prefix = prefix,
		.mac_prefix_len = 2,
		.ports = ports,
		.nports = 1,
	};
	char mac0[18], mac1[18], mac2[18], d0[96], d1[96], d2[96];
	assert_int_equal(qemu_mac_address("vm-123", prefix, 2, 0, mac0), 0);
	assert_int_equal(qemu_mac_address("vm-123", prefix, 2, 1, mac1), 0);
	assert_int_equal(qemu_mac_address("vm-123", prefix, 2, 2, mac2), 0);
	snprintf(d0, sizeof(d0), "virtio-net-pci,netdev=net0,mac=%s", mac0);
	snprintf(d1, sizeof(d1), "virtio-net-pci,netdev=net1,mac=%s", mac1);
	snprintf(d2, sizeof(d2), "virtio-net-pci,netdev=net2,mac=%s", mac2);
	const char *const want[] = {
		"/opt/qemu/bin/qemu-system-x86_64",
		"-accel",
		"kvm",
		"-cpu",
		"host,-arch-capabilities",
		"-nographic",
		"-nodefaults",
		"-chardev",
		"file,id=com0,path=/wd/serial.log,append=on",
		"-serial",
		"chardev:com0",
		"-kernel",
		"/img/bzImage",
		"-initrd",
		"/img/initrd",
		"-drive",
		"file=/wd/hda.img,if=none,id=hd1,format=qcow2",
		"-device",
		"virtio-blk-pci,drive=hd1",
		"-drive",
		"file=/vol/a.img,if=none,id=vol0,format=raw,readonly=on",
		"-device",
		"virtio-blk-pci,drive=vol0",
		"-drive",
		"file=/vol/b.img,if=none,id=vol1,format=raw,readonly=on",
		"-device",
		"virtio-blk-pci,drive=vol1",
		"-netdev",
		"user,id=net0,restrict=yes,hostfwd=tcp::2222-:22",
		"-device",
		d0,
		"-netdev",
		"user,id=net1,net=10.0.3.0/24,restrict=no",
		"-device",
		d1,
		"-netdev",
		"tap,id=net2,ifname=tap-vm1,script=no,downscript=no,vhost=off",
		"-device",
		d2,
		"-netdev",
		"bridge,id=net3,br=br0",
		"-device",
		"virtio-net-pci,netdev=net3,mac=52:54:00:aa:bb:cc",
		"-drive",
		"file=/wd/shared.img,if=none,id=hd2,format=raw,readonly=on",
		"-device",
		"virtio-blk-pci,drive=hd2",
		"-machine",
		"q35,kernel-irqchip=split,hpet=off",
		"-smp",
		"2",
		"-m",
		"1024M",
		"-append",
		"console=ttyS0",
		NULL,
	};
	expect_argv(&vm, want);
	assert_memory_equal(mac0, "52:54:", 6);
}

/* TCG on this machine: -machine pc, the console to a file, virtio-serial instead of vsock
 * (a server port and a client port), 9p read-only without mapping, -no-reboot. */
static void test_tcg_golden(void **state)
{
	static const struct qemu_nic nics[] = {
		{ .mode = QEMU_NIC_USER, .restrict_net = true },
	};
	static const struct qemu_port ports[] = {
		{ "tcp", "127.0.0.1", 18090, 8090 },
		{ "tcp", "127.0.0.1", 18080, 8080 },
	};
	static const struct qemu_serial_port sports[] = {
		{ "org.moonstack.agent", "/wd/agent.sock", true },
		{ "org.moonstack.host", "/run/vmm/host-api.sock", false },
	};
	struct qemu_vm vm = {
		.qemu = "/usr/bin/qemu-system-x86_64",
		.accel = QEMU_ACCEL_TCG,
		.vm_id = "0d5e8f43-6f0e-4c5b-9a3e-2a6f7e1c9b10",
		.vcpu = 1,
		.memory_mb = 512,
		.kernel = "/img/vmlinux",
		.initrd = "/img/initrd.gz",
		.cmdline = "console=ttyS0 quiet",
		.serial_log = "/wd/serial.log",
		.qmp_socket = "/wd/qmp.sock",
		.share = { .mode = QEMU_SHARE_9P,
			   .path = "/wd/shared",
			   .readonly = true,
			   .security_model = "none" },
		.nics = nics,
		.nnics = 1,
		.ports = ports,
		.nports = 2,
		.serial_ports = sports,
		.nserial_ports = 2,
		.no_reboot = true,
	};
	char mac[18], dev[96];
	assert_int_equal(qemu_mac_address(vm.vm_id, NULL, 0, 0, mac), 0);
	snprintf(dev, sizeof(dev), "virtio-net-pci,netdev=net0,mac=%s", mac);
	const char *const want[] = {
		"/usr/bin/qemu-system-x86_64",
		"-accel",
		"tcg",
		"-nographic",
		"-nodefaults",
		"-no-reboot",
		"-chardev",
		"file,id=com0,path=/wd/serial.log,append=on",
		"-serial",
		"chardev:com0",
		"-qmp",
		"unix:/wd/qmp.sock,server=on,wait=off",
		"-kernel",
		"/img/vmlinux",
		"-initrd",
		"/img/initrd.gz",
		"-netdev",
		"user,id=net0,restrict=yes,hostfwd=tcp:127.0.0.1:18090-:8090,"
		"hostfwd=tcp:127.0.0.1:18080-:8080",
		"-device",
		dev,
		"-device",
		"virtio-serial-pci",
		"-chardev",
		"socket,id=ch0,path=/wd/agent.sock,server=on,wait=off",
		"-device",
		"virtserialport,chardev=ch0,name=org.moonstack.agent",
		"-chardev",
		"socket,id=ch1,path=/run/vmm/host-api.sock,server=off,reconnect=1",
		"-device",
		"virtserialport,chardev=ch1,name=org.moonstack.host",
		"-virtfs",
		"local,path=/wd/shared,mount_tag=host-shared,readonly=on,security_model=none,"
		"id=virtfs0",
		"-machine",
		"pc",
		"-smp",
		"1",
		"-m",
		"512M",
		"-append",
		"console=ttyS0 quiet",
		NULL,
	};
	expect_argv(&vm, want);

	// q35 on request; the vvfat share with its label
	vm.machine = "q35";
	vm.nnics = 0;
	vm.nports = 0;
	vm.nserial_ports = 0;
	vm.qmp_socket = NULL;
	vm.no_reboot = false;
	vm.share = (struct qemu_share){ .mode = QEMU_SHARE_VVFAT, .path = "/wd/shared" };
	const char *const want2[] = {
		"/usr/bin/qemu-system-x86_64",
		"-accel",
		"tcg",
		"-nographic",
		"-nodefaults",
		"-chardev",
		"file,id=com0,path=/wd/serial.log,append=on",
		"-serial",
		"chardev:com0",
		"-kernel",
		"/img/vmlinux",
		"-initrd",
		"/img/initrd.gz",
		"-blockdev",
		"driver=vvfat,node-name=vvfat0,read-only=on,dir=/wd/shared,label=DSTACKSHR",
		"-device",
		"virtio-blk-pci,drive=vvfat0",
		"-machine",
		"q35",
		"-smp",
		"1",
		"-m",
		"512M",
		"-append",
		"console=ttyS0 quiet",
		NULL,
	};
	expect_argv(&vm, want2);
}

/* The netdev string of NIC 0 for the given ports. */
static char *netdev0(const struct qemu_vm *vm)
{
	struct qemu_argv a;
	struct qemu_error e;
	if (qemu_build_argv(vm, &a, &e) != 0)
		fail_msg("%s", e.msg);
	char *out = NULL;
	for (size_t i = 0; i + 1 < a.argc && !out; i++)
		if (strcmp(a.argv[i], "-netdev") == 0)
			out = strdup(a.argv[i + 1]);
	qemu_argv_free(&a);
	return out;
}

static void test_hostfwd_lists(void **state)
{
	static struct qemu_port ports[QEMU_MAX_PORTS + 1];
	static const struct qemu_nic nics[] = {
		{ .mode = QEMU_NIC_TAP, .ifname = "tap0" },
		{ .mode = QEMU_NIC_USER },
	};
	struct qemu_vm vm = tdx_vm();
	vm.nics = nics;
	vm.nnics = 2;
	vm.ports = ports;
	// none: no hostfwd at all
	vm.nports = 0;
	char *s = netdev0(&vm);
	assert_string_equal(s, "tap,id=net0,ifname=tap0,script=no,downscript=no,vhost=off");
	free(s);
	// every protocol, an empty address, the maximum count: all on the first user NIC (net1)
	for (int i = 0; i < QEMU_MAX_PORTS; i++)
		ports[i] = (struct qemu_port){ i % 2 ? "udp" : "tcp", i % 3 ? "127.0.0.1" : "",
					       (unsigned)(20000 + i), (unsigned)(1 + i) };
	vm.nports = QEMU_MAX_PORTS;
	struct qemu_argv a;
	struct qemu_error e;
	assert_int_equal(qemu_build_argv(&vm, &a, &e), 0);
	const char *user = NULL;
	for (size_t i = 0; i + 1 < a.argc; i++)
		if (strcmp(a.argv[i], "-netdev") == 0 && strncmp(a.argv[i + 1], "user,", 5) == 0)
			user = a.argv[i + 1];
	assert_non_null(user);
	assert_true(strncmp(user, "user,id=net1,restrict=no,hostfwd=tcp::20000-:1,", 47) == 0);
	assert_non_null(strstr(user, ",hostfwd=udp:127.0.0.1:20001-:2,"));
	const char *last = strrchr(user, ',');
	assert_string_equal(last, ",hostfwd=udp::20255-:256");
	size_t count = 0;
	for (const char *p = user; (p = strstr(p, "hostfwd=")); p++)
		count++;
	assert_int_equal(count, QEMU_MAX_PORTS);
	qemu_argv_free(&a);
	// one more is refused; a duplicate is refused; the same port on another address is not
	vm.nports = QEMU_MAX_PORTS + 1;
	expect_refused(&vm, "ports: more than 256");
	ports[0] = (struct qemu_port){ "tcp", "127.0.0.1", 8080, 80 };
	ports[1] = (struct qemu_port){ "tcp", "127.0.0.2", 8080, 80 };
	ports[2] = (struct qemu_port){ "udp", "127.0.0.1", 8080, 80 };
	ports[3] = (struct qemu_port){ "tcp", "127.0.0.1", 8080, 81 };
	vm.nports = 3;
	assert_int_equal(qemu_build_argv(&vm, &a, &e), 0);
	qemu_argv_free(&a);
	vm.nports = 4;
	expect_refused(&vm,
		       "ports[4].host_port: tcp 127.0.0.1:8080 is already forwarded by ports[1]");
	// ports without a user NIC
	vm.nnics = 1;
	vm.nports = 1;
	expect_refused(&vm, "ports: need a NIC of mode user");
}

static void test_mac(void **state)
{
	char mac[18];
	// upstream's own vectors (dstack-vmm network.rs)
	assert_int_equal(qemu_mac_address("vm-123", NULL, 0, 0, mac), 0);
	assert_string_equal(mac, "96:b1:d8:b9:08:e6");
	assert_int_equal(qemu_mac_address("vm-123", NULL, 0, 1, mac), 0);
	assert_string_equal(mac, "c6:74:2c:65:14:b9");
	// SHA-256("vm-123") = 97b1d8b908e6...: the prefix replaces leading bytes, the rest
	// shifts in from the hash's start; byte 0 is made local unicast afterwards
	const uint8_t p1[] = { 0x01 }, p3[] = { 0xff, 0x00, 0x11 };
	assert_int_equal(qemu_mac_address("vm-123", p1, 1, 0, mac), 0);
	assert_string_equal(mac, "02:97:b1:d8:b9:08");
	assert_int_equal(qemu_mac_address("vm-123", p3, 3, 0, mac), 0);
	assert_string_equal(mac, "fe:00:11:97:b1:d8");
	assert_int_equal(qemu_mac_address("vm-123", p3, 4, 0, mac), -EINVAL);
	// every derived MAC is locally administered unicast
	char id[32];
	for (int i = 0; i < 200; i++) {
		snprintf(id, sizeof(id), "vm-%d", i);
		assert_int_equal(qemu_mac_address(id, NULL, 0, (unsigned)i % 3, mac), 0);
		unsigned b0 = (unsigned)strtoul(mac, NULL, 16);
		assert_int_equal(b0 & 0x03, 0x02);
	}
}

static void test_commas(void **state)
{
	static const struct qemu_serial_port sp[] = { { "p", "/w,d/p.sock", true } };
	struct qemu_vm vm = {
		.qemu = "qemu-system-x86_64",
		.accel = QEMU_ACCEL_TCG,
		.vcpu = 1,
		.memory_mb = 64,
		.kernel = "/a,b/vmlinux",
		.cmdline = "a=1,2 b",
		.rootfs = "/a,b/root.img",
		.serial_log = "/w,d/serial.log",
		.qmp_socket = "/w,d/q.sock",
		.share = { .mode = QEMU_SHARE_9P, .path = "/w,d/shared" },
		.serial_ports = sp,
		.nserial_ports = 1,
	};
	const char *const want[] = {
		"qemu-system-x86_64",
		"-accel",
		"tcg",
		"-nographic",
		"-nodefaults",
		"-chardev",
		"file,id=com0,path=/w,,d/serial.log,append=on",
		"-serial",
		"chardev:com0",
		"-qmp",
		"unix:/w,,d/q.sock,server=on,wait=off",
		"-kernel",
		"/a,b/vmlinux", // not an option list: as is
		"-drive",
		"file=/a,,b/root.img,if=none,id=hd0,format=raw,readonly=on",
		"-device",
		"virtio-blk-pci,drive=hd0",
		"-device",
		"virtio-serial-pci",
		"-chardev",
		"socket,id=ch0,path=/w,,d/p.sock,server=on,wait=off",
		"-device",
		"virtserialport,chardev=ch0,name=p",
		"-virtfs",
		"local,path=/w,,d/shared,mount_tag=host-shared,readonly=off,security_model=mapped,"
		"id=virtfs0",
		"-machine",
		"pc",
		"-smp",
		"1",
		"-m",
		"64M",
		"-append",
		"a=1,2 b",
		NULL,
	};
	expect_argv(&vm, want);
	vm.initrd = "/a,b/initrd";
	expect_refused(&vm, "initrd: must not contain a comma");
}

static void test_refusals(void **state)
{
	struct qemu_vm vm;
	char long_sock[QEMU_MAX_SOCKET + 2];
	memset(long_sock, 'a', sizeof(long_sock) - 1);
	long_sock[0] = '/';
	long_sock[sizeof(long_sock) - 1] = '\0';
	static char long_cmd[QEMU_MAX_CMDLINE + 2];
	memset(long_cmd, 'x', sizeof(long_cmd) - 1);

#define REFUSE(change, prefix)               \
	do {                                 \
		vm = tdx_vm();               \
		change;                      \
		expect_refused(&vm, prefix); \
	} while (0)

	REFUSE(vm.qemu = NULL, "qemu: is required");
	REFUSE(vm.qemu = "bin/qemu", "qemu: character 0x2f");
	REFUSE(vm.qemu = "qemu x", "qemu: character 0x20");
	REFUSE(vm.accel = (enum qemu_accel)7, "accel: must be tdx, kvm or tcg");
	REFUSE(vm.machine = "pc", "machine: only for accel tcg");
	REFUSE((vm.accel = QEMU_ACCEL_TCG, vm.mrconfigid = NULL, vm.qgs_port = 0,
		vm.machine = "microvm"),
	       "machine: must be pc or q35");
	REFUSE(vm.cpu = "max", "cpu: a TDX guest runs with -cpu host");
	REFUSE((vm.accel = QEMU_ACCEL_KVM, vm.mrconfigid = NULL, vm.qgs_port = 0,
		vm.cpu = "host;rm"),
	       "cpu: character 0x3b");
	REFUSE(vm.vcpu = 0, "vcpu: must be 1..512");
	REFUSE(vm.vcpu = 513, "vcpu: must be 1..512");
	REFUSE(vm.memory_mb = 15, "memory_mb: must be 16..");
	REFUSE(vm.kernel = NULL, "kernel: is required");
	REFUSE(vm.kernel = "bzImage", "kernel: must be an absolute path");
	REFUSE(vm.initrd = "./initrd", "initrd: must be an absolute path");
	REFUSE(vm.bios = "/a\nb", "bios: control character 0x0a at byte 2");
	REFUSE(vm.rootfs = "/a\x7f", "rootfs: control character 0x7f");
	REFUSE(vm.data_disk = "/a\xff", "data_disk: not valid UTF-8 at byte 2");
	REFUSE(vm.serial_log = NULL, "serial_log: is required");
	REFUSE(vm.qmp_socket = long_sock, "qmp_socket: longer than 107 bytes");
	REFUSE(vm.cmdline = "console=ttyS0\ninit=/bin/sh", "cmdline: control character 0x0a");
	REFUSE(vm.cmdline = long_cmd, "cmdline: longer than 4096 bytes");
	REFUSE(vm.data_disk_format = "vmdk", "data_disk_format: must be qcow2 or raw");
	REFUSE((vm.data_disk = NULL, vm.data_disk_format = "raw"),
	       "data_disk_format: given without data_disk");
	REFUSE(vm.nvolumes = 1, "volumes[1]: is required");
	REFUSE(vm.vsock_cid = 2, "vsock_cid: must be 3..4294967294");
	REFUSE(vm.mrconfigid = "not base64!", "mrconfigid: must be base64");
	REFUSE(vm.mrconfigid = "AAA", "mrconfigid: must be base64");
	REFUSE(vm.mrconfigid = MRCONFIGID "AAAA", "mrconfigid: must be base64");
	REFUSE((vm.accel = QEMU_ACCEL_KVM, vm.qgs_port = 0), "mrconfigid: only for accel tdx");
	REFUSE((vm.accel = QEMU_ACCEL_KVM, vm.mrconfigid = NULL), "qgs_port: only for accel tdx");
	REFUSE(vm.share.path = "shared", "share.path: must be an absolute path");
	REFUSE(vm.share.security_model = "open", "share.security_model: must be mapped");
	REFUSE(vm.share.label = "X", "share.label: only for mode vvfat");
	REFUSE((vm.share.mode = QEMU_SHARE_VVFAT, vm.share.label = "TOO-LONG-LABEL"),
	       "share.label: longer than 11");
	REFUSE((vm.share.mode = QEMU_SHARE_VHD, vm.share.readonly = true),
	       "share.readonly: only for mode 9p");
	REFUSE((vm.share.mode = QEMU_SHARE_NONE), "share.mode: is required with share.path");
	REFUSE(vm.share.mode = (enum qemu_share_mode)9, "share.mode: must be 9p, vvfat or vhd");
	REFUSE(vm.nnics = QEMU_MAX_NICS + 1, "nics: more than 8");
	REFUSE(vm.mac_prefix_len = 4, "mac_prefix: at most 3 bytes");
	REFUSE(vm.vm_id = NULL, "vm_id: is required to derive");
	REFUSE(vm.vm_id = "a\tb", "vm_id: control character 0x09");

	static struct qemu_nic nic;
	static struct qemu_port port;
	static struct qemu_serial_port sp[2];
#define REFUSE_NIC(prefix, ...) \
	REFUSE((nic = (struct qemu_nic){ __VA_ARGS__ }, vm.nics = &nic, vm.nports = 0), prefix)
	REFUSE_NIC("nics[1].net: must be an IPv4", .mode = QEMU_NIC_USER, .net = "10.0.2.0");
	REFUSE_NIC("nics[1].net: must be an IPv4", .mode = QEMU_NIC_USER, .net = "10.0.2.0/33");
	REFUSE_NIC("nics[1].net: must be an IPv4", .mode = QEMU_NIC_USER, .net = "fd00::/64");
	REFUSE_NIC("nics[1].dhcp_start: not an IPv4 address", .mode = QEMU_NIC_USER,
		   .dhcp_start = "10.0.2.300");
	REFUSE_NIC("nics[1].ifname: only for mode tap", .mode = QEMU_NIC_USER, .ifname = "tap0");
	REFUSE_NIC("nics[1].ifname: character 0x2c", .mode = QEMU_NIC_TAP,
		   .ifname = "tap0,vhost=on");
	REFUSE_NIC("nics[1].ifname: longer than 15", .mode = QEMU_NIC_TAP,
		   .ifname = "a-very-long-tap-name");
	REFUSE_NIC("nics[1].mode: restrict, net and dhcp_start are for mode user",
		   .mode = QEMU_NIC_TAP, .restrict_net = true, .ifname = "t");
	REFUSE_NIC("nics[1].bridge: is required", .mode = QEMU_NIC_BRIDGE);
	REFUSE_NIC("nics[1].mode: must be user, tap or bridge", .mode = (enum qemu_nic_mode)5);
	REFUSE_NIC("nics[1].mac: must look like", .mode = QEMU_NIC_USER, .mac = "52:54:00:12:34");
	REFUSE_NIC("nics[1].mac: must look like", .mode = QEMU_NIC_USER,
		   .mac = "52:54:00:12:34:zz");

#define REFUSE_PORT(prefix, ...) \
	REFUSE((port = (struct qemu_port){ __VA_ARGS__ }, vm.ports = &port, vm.nports = 1), prefix)
	REFUSE_PORT("ports[1].protocol: must be tcp or udp", "sctp", NULL, 1, 1);
	REFUSE_PORT("ports[1].protocol: must be tcp or udp", NULL, NULL, 1, 1);
	REFUSE_PORT("ports[1].host_address: not an IPv4 address", "tcp", "localhost", 1, 1);
	REFUSE_PORT("ports[1].host_address: not an IPv4 address", "tcp", "::1", 1, 1);
	REFUSE_PORT("ports[1].host_port: must be 1..65535", "tcp", NULL, 0, 1);
	REFUSE_PORT("ports[1].host_port: must be 1..65535", "tcp", NULL, 65536, 1);
	REFUSE_PORT("ports[1].vm_port: must be 1..65535", "tcp", NULL, 1, 0);
	vm = tdx_vm();
	static struct qemu_port two[2] = { { "tcp", NULL, 80, 80 }, { "tcp", NULL, 81, 0 } };
	vm.ports = two;
	expect_refused(&vm, "ports[2].vm_port: must be 1..65535");

#define REFUSE_SP(n, prefix) REFUSE((vm.serial_ports = sp, vm.nserial_ports = n), prefix)
	sp[1] = (struct qemu_serial_port){ 0 };
	sp[0] = (struct qemu_serial_port){ "a b", "/s", true };
	REFUSE_SP(1, "serial_ports[1].name: character 0x20");
	sp[0] = (struct qemu_serial_port){ NULL, "/s", true };
	REFUSE_SP(1, "serial_ports[1].name: is required");
	sp[0] = (struct qemu_serial_port){ "a", "s", true };
	REFUSE_SP(1, "serial_ports[1].path: must be an absolute path");
	sp[0] = (struct qemu_serial_port){ "a", long_sock, true };
	REFUSE_SP(1, "serial_ports[1].path: longer than 107");
	sp[0] = (struct qemu_serial_port){ "a", "/run/vm/vm-123/qmp.sock", true };
	REFUSE_SP(1, "serial_ports[1].path: is the qmp_socket too");
	sp[0] = (struct qemu_serial_port){ "a", "/s", true };
	sp[1] = (struct qemu_serial_port){ "b", "/s", false };
	REFUSE_SP(2, "serial_ports[2].path: is serial_ports[1]'s too");
	sp[1] = (struct qemu_serial_port){ "a", "/t", false };
	REFUSE_SP(2, "serial_ports[2].name: is serial_ports[1]'s too");
	REFUSE(vm.nserial_ports = QEMU_MAX_SERIAL_PORTS + 1, "serial_ports: more than 16");
	REFUSE(vm.nvolumes = QEMU_MAX_VOLUMES + 1, "volumes: more than 16");

	// NULL vm
	struct qemu_argv a;
	struct qemu_error e;
	assert_int_equal(qemu_build_argv(NULL, &a, &e), -EINVAL);
#undef REFUSE
}

static void test_accel_names(void **state)
{
	assert_int_equal(qemu_accel_parse("tdx"), QEMU_ACCEL_TDX);
	assert_int_equal(qemu_accel_parse("kvm"), QEMU_ACCEL_KVM);
	assert_int_equal(qemu_accel_parse("tcg"), QEMU_ACCEL_TCG);
	assert_int_equal(qemu_accel_parse("hvf"), -1);
	assert_int_equal(qemu_accel_parse(NULL), -1);
	assert_string_equal(qemu_accel_name(QEMU_ACCEL_TCG), "tcg");
	assert_null(qemu_accel_name((enum qemu_accel)3));
}

static void test_probe(void **state)
{
	size_t len;
	const uint8_t *p = qemu_probe_payload(&len);
	assert_true(len > 32 && len < 512);
	// multiboot header: magic, flags, checksum summing to 0, loaded at 1 MiB
	uint32_t w[8];
	memcpy(w, p, sizeof(w));
	assert_int_equal(w[0], 0x1BADB002);
	assert_int_equal(w[1], 0x00010000);
	assert_int_equal((uint32_t)(w[0] + w[1] + w[2]), 0);
	assert_int_equal(w[4], 0x100000);
	assert_true(w[7] > 0x100000 && w[7] < 0x100000 + len);

	char dir[] = "/tmp/moonstack-qemu-test-XXXXXX", path[320];
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/probe.bin", dir);
	struct qemu_error e;
	assert_int_equal(qemu_probe_write_payload(path, &e), 0);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, (off_t)len);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(qemu_probe_write_payload(path, &e), -EEXIST); // never overwrites
	assert_string_equal(e.code, "EEXIST");
	assert_int_equal(qemu_probe_write_payload("rel.bin", &e), -EINVAL);
	unlink(path);

	struct qemu_argv a;
	assert_int_equal(qemu_probe_argv("qemu-system-x86_64", "kvm", path, &a, &e), 0);
	const char *const want[] = { "qemu-system-x86_64",
				     "-accel",
				     "kvm",
				     "-cpu",
				     "host",
				     "-machine",
				     "pc",
				     "-m",
				     "32",
				     "-smp",
				     "1",
				     "-nodefaults",
				     "-display",
				     "none",
				     "-no-reboot",
				     "-device",
				     "isa-debug-exit,iobase=0xf4,iosize=0x04",
				     "-kernel",
				     path,
				     NULL };
	for (size_t i = 0; want[i]; i++)
		assert_string_equal(a.argv[i], want[i]);
	assert_int_equal(a.argc, 19);
	qemu_argv_free(&a);
	assert_int_equal(qemu_probe_argv("/usr/bin/qemu-system-x86_64", "tcg", path, &a, &e), 0);
	assert_string_equal(a.argv[2], "tcg");
	assert_string_equal(a.argv[3], "-machine"); // no -cpu host under TCG
	qemu_argv_free(&a);
	assert_int_equal(qemu_probe_argv("q", "hvf", path, &a, &e), -EINVAL);
	assert_string_equal(e.msg, "accel: must be kvm or tcg");
	assert_int_equal(qemu_probe_argv("q", "kvm", "k", &a, &e), -EINVAL);

	// the TDX switch on a fake sysfs
	assert_int_equal(qemu_host_tdx(dir, &e), 0); // absent
	char sub[256];
	snprintf(sub, sizeof(sub), "%s/sys/module/kvm_intel/parameters", dir);
	char cmd[400];
	snprintf(cmd, sizeof(cmd), "mkdir -p %s", sub);
	assert_int_equal(system(cmd), 0);
	snprintf(path, sizeof(path), "%s/tdx", sub);
	FILE *f = fopen(path, "w");
	fputs("N\n", f);
	fclose(f);
	assert_int_equal(qemu_host_tdx(dir, &e), 0);
	f = fopen(path, "w");
	fputs("Y\n", f);
	fclose(f);
	assert_int_equal(qemu_host_tdx(dir, &e), 1);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

static int scan(const char *s, struct qemu_json_top *top)
{
	size_t where;
	return qemu_json_scan(s, strlen(s), top, &where);
}

static void test_json_scan(void **state)
{
	struct qemu_json_top t;
	assert_int_equal(scan("{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 22, \"minor\": 2, "
			      "\"major\": 7}, \"package\": \"Debian 1:7.2+dfsg-7\"}, "
			      "\"capabilities\": [\"oob\"]}}",
			      &t),
			 0);
	assert_true(t.qmp && !t.event && !t.ret && !t.has_id);
	assert_int_equal(scan(" {\"return\": {}, \"id\": 42}\r\n", &t), 0);
	assert_true(t.ret && t.has_id);
	assert_int_equal(t.id, 42);
	assert_int_equal(scan("{\"id\": 18446744073709551615, \"error\": {\"class\": \"X\", "
			      "\"desc\": \"\\u00e9\\n\\\"\"}}",
			      &t),
			 0);
	assert_true(t.error && t.has_id && t.id == UINT64_MAX);
	assert_int_equal(scan("{\"id\": 18446744073709551616, \"return\": 1}", &t), 0);
	assert_false(t.has_id); // overflow: not an id of ours
	assert_int_equal(scan("{\"id\": \"7\", \"return\": 1}", &t), 0);
	assert_false(t.has_id);
	assert_int_equal(scan("{\"id\": -1, \"return\": 1.5e-3}", &t), 0);
	assert_false(t.has_id);
	assert_int_equal(scan("{\"event\": \"STOP\", \"timestamp\": {\"seconds\": 1, "
			      "\"microseconds\": 2}, \"data\": {\"a\": [true, false, null, "
			      "\"\xc3\xa9\"]}}",
			      &t),
			 0);
	assert_true(t.event && !t.has_id);
	// nested "id" does not count
	assert_int_equal(scan("{\"return\": {\"id\": 3}}", &t), 0);
	assert_false(t.has_id);

	static const char *const bad[] = {
		"",
		"garbage",
		"[1, 2]",
		"\"str\"",
		"{",
		"{\"a\"}",
		"{\"a\": }",
		"{\"a\": 1,}",
		"{\"a\": 1} {}",
		"{\"a\": 01}",
		"{\"a\": 1.}",
		"{\"a\": -}",
		"{\"a\": tru}",
		"{\"a\": \"\\x\"}",
		"{\"a\": \"\\u12g4\"}",
		"{\"a\": \"raw\ttab\"}",
		"{\"a\": \"\xff\"}",
		"{\"a\": \"\xed\xa0\x80\"}",
		"{a: 1}",
		"{\"a\": [1 2]}",
		NULL,
	};
	for (size_t i = 0; bad[i]; i++)
		if (scan(bad[i], &t) == 0)
			fail_msg("accepted: %s", bad[i]);
	// a NUL inside the line
	assert_int_equal(qemu_json_scan("{\"a\": \"x\0y\"}", 12, &t, NULL), -1);
	// nesting: QEMU_JSON_MAX_DEPTH levels pass, one more does not, a deep bomb fails fast
	char deep[2 * (QEMU_JSON_MAX_DEPTH + 8) + 16];
	for (int depth = QEMU_JSON_MAX_DEPTH - 1; depth <= QEMU_JSON_MAX_DEPTH; depth++) {
		size_t n = 0;
		deep[n++] = '{';
		deep[n++] = '"';
		deep[n++] = 'a';
		deep[n++] = '"';
		deep[n++] = ':';
		for (int i = 0; i < depth; i++)
			deep[n++] = '[';
		for (int i = 0; i < depth; i++)
			deep[n++] = ']';
		deep[n++] = '}';
		deep[n] = '\0';
		assert_int_equal(scan(deep, &t), depth < QEMU_JSON_MAX_DEPTH ? 0 : -1);
	}
	size_t big = 1 << 20;
	char *bomb = malloc(big + 8);
	memcpy(bomb, "{\"a\":", 5);
	memset(bomb + 5, '[', big);
	assert_int_equal(qemu_json_scan(bomb, big + 5, &t, NULL), -1);
	free(bomb);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tdx_golden),    cmocka_unit_test(test_tdx_object_keys),
		cmocka_unit_test(test_kvm_golden),    cmocka_unit_test(test_tcg_golden),
		cmocka_unit_test(test_hostfwd_lists), cmocka_unit_test(test_mac),
		cmocka_unit_test(test_commas),	      cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_accel_names),   cmocka_unit_test(test_probe),
		cmocka_unit_test(test_json_scan),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
