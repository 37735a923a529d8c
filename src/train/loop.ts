// train(config, options): the plain way into a training run. The run itself, its named steps and its options
// are src/train/trainer.ts; this file keeps the entry point many callers import.
export { train, Trainer, type TrainOptions, type TrainResult } from "./trainer.ts";
