#!/usr/bin/env node
// A LoRaWAN 1.0.x end device for Warden's e2e tests, built on the third-party npm package
// `lora-packet`: every frame, MIC, encryption and key derivation here is lora-packet's, so Warden's
// own codec is checked against an independent implementation. One operation per call, JSON out.
//
//   node device.cjs join <DevNonce hex4> [AppKey hex32]              → {"phy": hex}
//   node device.cjs accept <JoinAccept hex> <DevNonce hex4> [AppKey]  → {"mic_ok", "dev_addr", "nwk_s_key", "app_s_key", ...}
//   node device.cjs up <DevAddr hex8> <NwkSKey> <AppSKey> <FCnt (32-bit)> <confirmed 0|1> <FPort|-> <payload hex> [FOpts hex]
//                                                                    → {"phy": hex}
//   node device.cjs ups <DevAddr> <NwkSKey> <AppSKey> <first FCnt> <count> <FPort> <payload hex>
//                                                                    → {"phys": [hex, …]} (unconfirmed, FCnt first..first+count)
//   node device.cjs down <phy hex> <NwkSKey> <AppSKey> <FCnt (32-bit)> → {"mic_ok", "ack", "fcnt", "fport", "fopts", "payload"}
// EUIs default to the test keys; override with env DEV_EUI / APP_EUI.
"use strict";
const lora = require("lora-packet");
const H = (s) => Buffer.from(s, "hex");
const TEST_APP_KEY = "2B7E151628AED2A6ABF7158809CF4F3C";
const devEUI = H(process.env.DEV_EUI || "0004A30B001C0530");
const appEUI = H(process.env.APP_EUI || "70B3D57ED0000001");
const [op, ...a] = process.argv.slice(2);
const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");
// the upper 16 bits of a 32-bit counter, in the little-endian order lora-packet appends them
const msb = (fcnt) => { const b = Buffer.alloc(2); b.writeUInt16LE(Math.floor(fcnt / 65536) & 0xffff); return b; };

switch (op) {
  case "join": {
    const p = lora.fromFields({ MType: "Join Request", AppEUI: appEUI, DevEUI: devEUI, DevNonce: H(a[0]) },
      null, null, H(a[1] || TEST_APP_KEY));
    out({ phy: p.getPHYPayload().toString("hex") });
    break;
  }
  case "accept": {
    const key = H(a[2] || TEST_APP_KEY);
    const ja = lora.fromWire(lora.decryptJoinAccept(lora.fromWire(H(a[0])), key));
    const mic_ok = lora.verifyMIC(ja, null, key);
    const k = lora.generateSessionKeys(key, ja.NetID, ja.AppNonce, H(a[1]));
    out({ mic_ok, mtype: ja.getMType(), dev_addr: ja.DevAddr.toString("hex"), net_id: ja.NetID.toString("hex"),
      app_nonce: ja.AppNonce.toString("hex"), dl_settings: ja.DLSettings.toString("hex"), rx_delay: ja.RxDelay.toString("hex"),
      nwk_s_key: k.NwkSKey.toString("hex"), app_s_key: k.AppSKey.toString("hex") });
    break;
  }
  case "up": {
    const [addr, nwk, app, fcntS, conf, port, payload, fopts] = a;
    const fcnt = Number(fcntS);
    const fields = { MType: conf === "1" ? "Confirmed Data Up" : "Unconfirmed Data Up", DevAddr: H(addr),
      FCtrl: { ADR: false, ACK: false, ADRACKReq: false, FPending: false }, FCnt: fcnt & 0xffff,
      payload: H(payload || "") };
    if (port !== "-") fields.FPort = Number(port);
    if (fopts) fields.FOpts = H(fopts);
    const p = lora.fromFields(fields, H(app), H(nwk), null, msb(fcnt));
    if (port === "-") lora.recalculateMIC(p, H(nwk), null, msb(fcnt));
    out({ phy: p.getPHYPayload().toString("hex") });
    break;
  }
  case "ups": {
    const [addr, nwk, app, firstS, countS, port, payload] = a;
    const phys = [];
    for (let f = Number(firstS); f < Number(firstS) + Number(countS); f++) {
      const p = lora.fromFields({ MType: "Unconfirmed Data Up", DevAddr: H(addr),
        FCtrl: { ADR: false, ACK: false, ADRACKReq: false, FPending: false }, FCnt: f & 0xffff,
        FPort: Number(port), payload: H(payload) }, H(app), H(nwk), null, msb(f));
      phys.push(p.getPHYPayload().toString("hex"));
    }
    out({ phys });
    break;
  }
  case "down": {
    const [phy, nwk, app, fcntS] = a;
    const fcnt = Number(fcntS);
    const p = lora.fromWire(H(phy));
    const mic_ok = lora.verifyMIC(p, H(nwk), null, msb(fcnt));
    const fport = p.getFPort();
    let payload = "";
    if (p.FRMPayload && p.FRMPayload.length) payload = lora.decrypt(p, H(app), H(nwk), msb(fcnt)).toString("hex");
    out({ mic_ok, mtype: p.getMType(), ack: p.getFCtrlACK(), fpending: p.getFCtrlFPending(), fcnt: p.getFCnt(),
      dev_addr: p.getBuffers().DevAddr.toString("hex"), fport, fopts: (p.FOpts || Buffer.alloc(0)).toString("hex"), payload });
    break;
  }
  default:
    process.stderr.write("usage: device.cjs join|accept|up|down …\n");
    process.exit(2);
}
