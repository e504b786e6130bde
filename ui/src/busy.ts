// What the app is busy with right now (model loading, a summary, a suggestion…), for the
// status bar's spinner.

import { Emitter } from "./events";

const tasks = new Map<number, string>();
let next = 1;
export const busyChanged = new Emitter<string[]>();

/** Marks the start of some work; call the returned function when it ends. */
export function startBusy(label: string): () => void {
  const id = next++;
  tasks.set(id, label);
  busyChanged.emit([...tasks.values()]);
  let done = false;
  return () => {
    if (done) return;
    done = true;
    tasks.delete(id);
    busyChanged.emit([...tasks.values()]);
  };
}

export function busyLabels(): string[] {
  return [...tasks.values()];
}
