/** Plotting and rasterizing: scenes (shapes and text), SVG, a dependency-free rasterizer and PNG encoder, heatmaps and line charts. */
export { heatmapScene, renderHeatmapSvg, renderHeatmapPng, lengthLabel, depthLabel, type HeatmapPanel, type HeatmapOptions } from './heatmap.js';
export { lineChartScene, lineChartSvg, lineChartPng, niceTicks, type LineChartOptions, type LineSeries } from './chart.js';
export { accuracyColor, NIAH_COLORS, SERIES_COLORS } from './color.js';
export { encodePng, writePng, crc32, type RgbImage } from './png.js';
export { Raster, rasterizeScene } from './raster.js';
export { sceneToSvg, type Scene, type Shape } from './scene.js';
export { writeScene } from './write.js';
