//! The IoT Hub query language: parser and evaluator over twins and device-job records.
