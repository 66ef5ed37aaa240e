// A beep and a vibration on a new red alert, where the browser allows them.

let ctx = null;

/** Browsers start audio only after a gesture: call this from one (and it is safe later). */
export function unlockSound() {
  const Ctx = window.AudioContext || window.webkitAudioContext;
  if (!Ctx) return;
  if (!ctx) ctx = new Ctx();
  if (ctx.state === "suspended") ctx.resume().catch(() => {});
}

export function alarm() {
  if (navigator.vibrate) {
    try {
      navigator.vibrate([200, 100, 200]);
    } catch {
      // Not allowed without a gesture: the beep and the list still tell.
    }
  }
  if (!ctx || ctx.state !== "running") return;
  const t = ctx.currentTime;
  for (const [start, freq] of [
    [0, 880],
    [0.25, 660],
  ]) {
    const osc = ctx.createOscillator();
    const gain = ctx.createGain();
    osc.type = "square";
    osc.frequency.value = freq;
    gain.gain.setValueAtTime(0.0001, t + start);
    gain.gain.exponentialRampToValueAtTime(0.2, t + start + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, t + start + 0.2);
    osc.connect(gain).connect(ctx.destination);
    osc.start(t + start);
    osc.stop(t + start + 0.22);
  }
}
