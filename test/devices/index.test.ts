import { describe, expect, it } from 'vitest';
import * as devices from '../../src/devices/index';

describe('devices index', () => {
  it('re-exports the device models and port constants', () => {
    for (const name of [
      'Bus', 'BusOverlapError', 'Serial8250', 'I8042', 'Cmos', 'AcpiPm', 'PciRoot', 'PciConfigIo', 'PciConfigSpace',
    ]) {
      expect(typeof (devices as Record<string, unknown>)[name], name).toBe('function');
    }
    expect(devices.PM1A_EVT_PORT).toBe(0x600);
    expect(devices.PM1A_CNT_PORT).toBe(0x604);
    expect(devices.S5_SLP_TYP).toBe(5);
    expect(devices.CMOS_PORT).toBe(0x70);
    expect(devices.I8042_PORT).toBe(0x60);
    expect(devices.PCI_CONFIG_IO_PORT).toBe(0xcf8);
    expect(devices.COM_PORTS[0]).toEqual({ base: 0x3f8, irq: 4 });
  });
});
